@testable import DLogLedger
import DLogTestSupport
import DLogWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The order in which one long poll asks a fragment's bookies, and when it ends.
@Suite struct LACPollTests {
    /// The bookies asked, in order, as the poll asked them.
    final class Asked: Sendable {
        let list = Mutex<[Int]>([])
        var all: [Int] { list.withLock { $0 } }
    }

    /// Starts a poll for a LAC past 4 over three bookies, waits until it asked the first, then runs `body`.
    static func polling(spreadAfter delay: Duration = .seconds(60),
                        _ body: (LACPoll, Asked, Task<LACPoll.Outcome, Never>) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let asked = Asked()
        let poll = LACPoll(previous: EntryID(4), known: EntryID(4), bookies: 3) { index, _ in
            asked.list.withLock { $0.append(index) }
        }
        let run = Task { await poll.run(spreadAfter: delay, on: group.next()) }
        do {
            try await waitUntil(asked, count: 1)
            try await body(poll, asked, run)
        } catch {
            run.cancel()
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    static func waitUntil(_ asked: Asked, count: Int) async throws {
        try await withTimeout(10, "\(count) bookies asked") {
            while asked.all.count < count { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    static func end(_ run: Task<LACPoll.Outcome, Never>) async throws -> LACPoll.Outcome {
        try await withTimeout(10, "the poll's end") { await run.value }
    }

    @Test func theFirstBookieWithProgressEndsThePoll() async throws {
        try await Self.polling { poll, asked, run in
            poll.answered(EntryID(6))
            let outcome = try await Self.end(run)
            #expect(outcome.best == EntryID(6) && outcome.answered == 1)
            #expect(asked.all == [0], "only the first bookie was asked")
        }
    }

    @Test func aFailureOrNoProgressAsksTheRestAtOnceAndTheEndComesWithTheLastAnswer() async throws {
        try await Self.polling { poll, asked, run in
            poll.answered(nil)  // the first bookie failed: the others are asked now, not after the delay
            try await Self.waitUntil(asked, count: 3)
            #expect(asked.all == [0, 1, 2])
            poll.answered(EntryID(4))  // no progress
            poll.answered(nil)
            let outcome = try await Self.end(run)
            #expect(outcome.best == EntryID(4) && outcome.answered == 1)
        }
    }

    @Test func theSpreadDelayAsksTheRest() async throws {
        try await Self.polling(spreadAfter: .milliseconds(20)) { poll, asked, run in
            // The first bookie never answers: the delay asks the others.
            try await Self.waitUntil(asked, count: 3)
            #expect(asked.all == [0, 1, 2])
            poll.answered(EntryID(5))
            #expect(try await Self.end(run).best == EntryID(5))
        }
    }

    @Test func cancellingTheWaitEndsItWithWhatCame() async throws {
        try await Self.polling { poll, asked, run in
            run.cancel()
            let outcome = try await Self.end(run)
            #expect(outcome.best == EntryID(4) && outcome.answered == 0)
            // A late answer changes nothing and asks no one.
            poll.answered(nil)
            #expect(asked.all == [0])
        }
    }

    @Test func withoutATimerLoopEveryBookieIsAskedAtOnce() async throws {
        // A client shutting down has no loop for the spread timer: the poll must still end.
        let asked = Asked()
        let poll = LACPoll(previous: EntryID(4), known: EntryID(4), bookies: 3) { index, poll in
            asked.list.withLock { $0.append(index) }
            poll.answered(nil)
        }
        let outcome = try await withTimeout(10, "the poll's end") { await poll.run(spreadAfter: .seconds(60), on: nil) }
        #expect(asked.all == [0, 1, 2] && outcome.answered == 0)
    }
}
