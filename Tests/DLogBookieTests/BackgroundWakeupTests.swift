@testable import DLogBookie
import DLogTestSupport
import Foundation
import Logging
import Testing

/// The bookie's background thread sleeps until its next work is due (`BackgroundSchedule.nextDue`) or news
/// wakes it; it used to poll every 10 ms, and the compaction thread every 50 ms.
@Suite struct BackgroundWakeupTests {
    private func bookie(_ dir: TempDir) throws -> Bookie {
        var config = Bookie.Configuration(journal: .init(directory: dir.sub("journal"), fileBytes: 4 << 20, filesMax: 4),
                                          journalDirectories: [dir.sub("journal")],
                                          storage: .init(ledgerDirectories: [dir.sub("ledgers")]))
        config.checkpointInterval = .seconds(600)
        config.diskCheckInterval = .seconds(600)
        let b = try Bookie(configuration: config, logger: Logger(label: "test"))
        try b.start { _ in }
        return b
    }

    /// Idle, the thread takes a turn at start and then sleeps: a second later it has taken a few turns at most
    /// (polling took about a hundred). An ask for a checkpoint wakes it, and the checkpoint runs.
    @Test func anIdleBookieSleepsAndAnAskWakesIt() async throws {
        let dir = TempDir()
        let b = try bookie(dir)
        defer { b.stop() }
        try await Task.sleep(for: .seconds(1))
        let idle = b.backgroundTurns.load(ordering: .relaxed)
        #expect(idle <= 3, "\(idle) turns in an idle second")
        let before = b.storage.checkpoints
        b.requestCheckpoint()
        let deadline = ContinuousClock.now + .seconds(20)
        while b.storage.checkpoints == before && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(b.storage.checkpoints > before, "the ask was not served")
    }

    /// Stop wakes both threads: it does not wait out a checkpoint or compaction interval.
    @Test func stopWakesTheSleepingThreads() throws {
        let dir = TempDir()
        let b = try bookie(dir)
        let started = ContinuousClock.now
        b.stop()
        #expect(ContinuousClock.now - started < .seconds(60))
    }
}
