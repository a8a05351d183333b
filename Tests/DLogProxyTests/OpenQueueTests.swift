@testable import DLogProxy
import DLogTestSupport
import Synchronization
import Testing

@Suite struct OpenQueueTests {
    /// What the opens saw: how many ran at once at most, and the order they started in.
    final class Record: Sendable {
        private let state = Mutex((running: 0, most: 0, order: [Int](), finished: 0))
        private let release = Mutex<CheckedContinuation<Void, Never>?>(nil)
        func start(_ n: Int) { state.withLock { $0.running += 1; $0.most = max($0.most, $0.running); $0.order.append(n) } }
        func end() { state.withLock { $0.running -= 1 } }
        func finish() { state.withLock { $0.finished += 1 } }
        var finished: Int { state.withLock { $0.finished } }
        /// An open that waits for `resume()`.
        func hold() async { await withCheckedContinuation { continuation in release.withLock { $0 = continuation } } }
        var holding: Bool { release.withLock { $0 != nil } }
        func resume() { release.withLock { $0?.resume() } }
        var most: Int { state.withLock { $0.most } }
        var order: [Int] { state.withLock { $0.order } }
    }

    @Test func aBurstOfOpensRunsAtMostLimitAtOnceAndFailuresPassTheirTurnOn() async throws {
        // Proves 30 opens asked for at once run 3 at a time and all finish, failing ones too: in parallel, every
        // open of a burst finished at its end, and the answers with them.
        let queue = OpenQueue(limit: 3)
        let record = Record()
        try await withTimeout(30, "30 opens through a queue of 3") {
            await withTaskGroup(of: Void.self) { group in
                for n in 0..<30 {
                    group.addTask {
                        _ = try? await queue.run { () async throws -> Int in
                            record.start(n)
                            defer { record.end() }
                            try await Task.sleep(for: .milliseconds(5))
                            if n % 7 == 0 { throw CancellationError() }
                            return n
                        }
                        record.finish()
                    }
                }
            }
        }
        #expect(record.most == 3)
        #expect(record.finished == 30 && record.order.count == 30)
        #expect(queue.waiting == 0)
    }

    @Test func waitingOpensRunInTheOrderAskedFor() async throws {
        // Proves the first open asked for is the first to run once a turn frees: the first answers of a burst
        // come at once, not at its end.
        let queue = OpenQueue(limit: 1)
        let record = Record()
        let holder = Task { try await queue.run { await record.hold() } }
        try await withTimeout(30, "20 opens queued in order") {
            while !record.holding { await Task.yield() }
            await withTaskGroup(of: Void.self) { group in
                for n in 1...20 {
                    group.addTask { _ = try? await queue.run { () async throws -> Int in record.start(n); record.end(); return n } }
                    while queue.waiting < n { await Task.yield() }
                }
                record.resume()
            }
        }
        try await holder.value
        #expect(record.order == Array(1...20))
        #expect(record.most == 1)
    }
}
