import DLogBookie
@testable import DLogDaemon
import DLogTestSupport
import Foundation
import Synchronization
import Testing

/// What dlogd tells systemd, received on a real notify socket (the datagram protocol sd_notify speaks), with
/// a watchdog interval set the way systemd sets it.
@Suite(.serialized) struct NotifyTests {
    @Test func aBookieSaysReadyThenPingsTheWatchdogWithItsStatus() async throws {
        // Proves READY=1 once serving, then WATCHDOG=1 at half the interval together with a STATUS line naming
        // the state, the adds/s and the sync p99, and STOPPING=1 on SIGTERM.
        let dir = TempDir("dlog-notify")
        let run = try NotifiedDaemon(["bookie", "--journal-dir", dir.sub("j"), "--ledger-dir", dir.sub("l"), "--port", "0", "--config", try {
            let path = dir.sub("b.conf")
            try "journal_file_bytes = 8M\njournal_files_max = 3\nmax_frame_bytes = 1M\nallow_shared_device = true\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }()], in: dir)
        let messages = await run.pings(3)
        #expect(messages.first?.contains("READY=1") == true, "\(messages)")
        let pings = messages.filter { $0.contains("WATCHDOG=1") }
        #expect(pings.count >= 3, "\(messages)")
        #expect(pings.last?.contains("STATUS=writable,") == true && pings.last?.contains("adds/s") == true, "\(messages)")
        run.kill(SIGTERM)
        #expect(await run.message(containing: "STOPPING=1"), "STOPPING=1 on SIGTERM")
    }
}

extension NotifyTests {
    @Test func theMetadataRolePingsTheWatchdogWithItsStatus() async throws {
        // Proves the metadata role also pings at half the interval (it was once killed by systemd's watchdog
        // for never pinging), with a status line naming the revision.
        let dir = TempDir("dlog-notify-metadata")
        let run = try NotifiedDaemon(["metadata", "--data-dir", dir.sub("m"), "--port", "0"], in: dir)
        let messages = await run.pings(3)
        let pings = messages.filter { $0.contains("WATCHDOG=1") }
        #expect(messages.first?.contains("READY=1") == true && pings.count >= 3, "\(messages)")
        #expect(pings.last?.contains("STATUS=serving; revision ") == true, "\(messages)")
    }
}

extension NotifyTests {
    @Test func aBookieShowsJournalReplayInItsStatusBeforeItIsReady() async throws {
        // Proves a bookie restarted after a crash (SIGKILL under load: its journal holds what no checkpoint has)
        // tells systemd how its replay goes, in a STATUS line sent before READY=1.
        let dir = TempDir("dlog-notify-replay")
        let config = dir.sub("b.conf")
        try "journal_file_bytes = 8M\njournal_files_max = 3\nmax_frame_bytes = 1M\nallow_shared_device = true\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let port = Int.random(in: 20_000...50_000)
        let arguments = ["bookie", "--journal-dir", dir.sub("j"), "--ledger-dir", dir.sub("l"), "--port", "\(port)", "--config", config]
        let sockets = (TempDir("dlog-notify-replay-1"), TempDir("dlog-notify-replay-2"))
        let first = try NotifiedDaemon(arguments, in: sockets.0)
        #expect(await first.pings(1).contains { $0.contains("READY=1") }, "the first run came up on port \(port)")
        let load = try await BenchRun(["bookie", "--target", "127.0.0.1:\(port)", "--clients", "2", "--pipeline", "16",
                                       "--duration", "1", "--json"], in: dir, timeout: 60)
        #expect(load.status == 0, "\(load.stdout)\(load.stderr)")
        first.kill(SIGKILL)
        _ = await first.process.exitStatus(within: 10)

        let second = try NotifiedDaemon(arguments, in: sockets.1)
        let messages = await second.pings(1)
        let replay = messages.firstIndex { $0.contains("STATUS=replaying journal 1 of 1: file 1 of ") && $0.contains("records so far") }
        let ready = messages.firstIndex { $0.contains("READY=1") }
        #expect(replay != nil && ready != nil && replay! < ready!, "\(messages)")
    }
}

/// dlogd run the way systemd runs it: NOTIFY_SOCKET on a socket of ours, WATCHDOG_USEC of one second.
final class NotifiedDaemon {
    let listener: NotifyListener
    let process = Process()

    init(_ arguments: [String], in dir: TempDir) throws {
        let socketPath = dir.sub("notify.sock")
        listener = try NotifyListener(path: socketPath)
        process.executableURL = URL(fileURLWithPath: dlogdPath)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = socketPath
        environment["WATCHDOG_USEC"] = "1000000"
        environment.removeValue(forKey: "WATCHDOG_PID")
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Messages until `count` watchdog pings arrived, or 20 s passed (see `NotifyListener.pings`).
    func pings(_ count: Int) async -> [String] { await listener.pings(count) }

    /// Whether a message containing `text` arrives within 20 s.
    func message(containing text: String) async -> Bool { await listener.message(containing: text) }

    func kill(_ signal: Int32) {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
    }

    deinit {
        kill(SIGKILL)
        listener.close()
    }
}

/// A notify socket as systemd makes one: a Unix datagram socket that messages arrive on.
final class NotifyListener: Sendable {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw DaemonError("cannot bind a notify socket at \(path)") }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// `untilPings` on a thread of its own: it blocks on the socket for up to 20 s, and tests share a cooperative
    /// pool of as many threads as cores, which every other test running meanwhile needs.
    func pings(_ count: Int) async -> [String] {
        await withCheckedContinuation { (done: CheckedContinuation<[String], Never>) in
            Thread.detachNewThread { done.resume(returning: self.untilPings(count)) }
        }
    }

    /// Whether a message containing `text` arrives within 20 s (waiting on a thread of its own, as `pings`).
    func message(containing text: String) async -> Bool {
        await withCheckedContinuation { (done: CheckedContinuation<Bool, Never>) in
            Thread.detachNewThread {
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline {
                    if let message = self.receive(), message.contains(text) { return done.resume(returning: true) }
                }
                done.resume(returning: false)
            }
        }
    }

    /// Messages received until `count` watchdog pings arrived, or 20 s passed.
    func untilPings(_ count: Int) -> [String] {
        var messages: [String] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline && messages.filter({ $0.contains("WATCHDOG=1") }).count < count {
            if let message = receive() { messages.append(message) }
        }
        return messages
    }

    /// The next message, or nil after a second without one.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }

    func close() { Glibc.close(fd) }
}

@Suite struct HealthRuleTests {
    @Test func aJournalWithWorkWaitingAndNoSyncIsStuck() {
        var progress = JournalProgress()
        var stats = JournalStats()
        stats.queueDepth = 5
        stats.syncs = 10
        #expect(progress.check([stats]) == nil, "the first look has nothing to compare with")
        #expect(progress.check([stats])?.contains("5 records waiting") == true)
        stats.syncs = 11
        #expect(progress.check([stats]) == nil, "it synced since")
        stats.queueDepth = 0
        #expect(progress.check([stats]) == nil, "idle is not stuck")
        stats.failed = "EIO"
        #expect(progress.check([stats]) == "journal 0 failed: EIO")
    }

    @Test func aStuckProbeIsNotStartedTwice() async throws {
        // A store that hangs fails the probe after its time limit, and the next look fails at once without
        // starting another task; once the store answers, the probe passes again.
        let probe = BoundedProbe()
        let gate = DispatchSemaphore(value: 0)
        let starts = Mutex(0)
        let hung: @Sendable () async -> Void = {
            starts.withLock { $0 += 1 }
            await withCheckedContinuation { (resume: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async { gate.wait(); resume.resume() }
            }
        }
        #expect(!probe.answers(within: .milliseconds(50), hung))
        #expect(!probe.answers(within: .seconds(5), hung), "fails while the first is stuck")
        // The first run's task may start late on a busy machine; it is the only one ever started.
        let deadline = ContinuousClock.now + .seconds(30)
        // Sleeping, not blocking, leaves the shared threads free for that task.
        while starts.withLock({ $0 }) == 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!probe.answers(within: .milliseconds(10), hung))
        #expect(starts.withLock { $0 } == 1)
        gate.signal()
        var passed = false
        while !passed && ContinuousClock.now < deadline + .seconds(30) {
            passed = probe.answers(within: .seconds(1)) {}
            if !passed { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(passed, "answers again once the stuck run finished")
    }

    @Test func theStatusLineQuotesTheSyncP99Bucket() {
        var buckets = [UInt64](repeating: 0, count: 12)
        buckets[3] = 990  // < 128 µs
        buckets[7] = 10   // < 2 ms
        #expect(BookieStatusLine.p99(buckets) == "128 µs")
        buckets[7] = 20
        #expect(BookieStatusLine.p99(buckets) == "2 ms")
        #expect(BookieStatusLine.p99([UInt64](repeating: 0, count: 12)) == nil)
    }

    @Test func anIdleBookieSaysItHasNoSyncsYet() {
        // Proves a bookie whose journals have synced nothing says "no syncs yet" instead of quoting a p99
        // bound it does not have (it read "sync p99 < -"), and quotes the bound once a sync is measured.
        var line = BookieStatusLine()
        var journal = JournalStats()
        journal.syncLatencyBuckets = [UInt64](repeating: 0, count: LatencyBuckets.count)
        #expect(line.line(readOnly: false, [journal]) == "writable, 0 adds/s, no syncs yet")
        #expect(line.line(readOnly: true, []) == "read-only, 0 adds/s, no syncs yet")
        journal.syncLatencyBuckets[2] = 1  // < 64 µs
        #expect(line.line(readOnly: false, [journal]).hasSuffix(", sync p99 < 64 µs"))
    }

    @Test func theStatusLineNamesFailingCheckpoints() {
        var line = BookieStatusLine()
        #expect(line.line(readOnly: false, []).hasPrefix("writable, "))
        #expect(!line.line(readOnly: false, checkpointFailures: 0, []).contains("checkpoint"))
        #expect(line.line(readOnly: true, checkpointFailures: 3, []).hasSuffix(", checkpoints failing (3 in a row)"))
    }
}
