@testable import DLogBookie
import DLogTestSupport
import Foundation
import Testing

/// After a completion with nothing queued, the writer polls for the next add for `spinMax` before it sleeps, and
/// counts each poll; with `spinMax` zero it never polls (a standalone's bookies, whose cores are all busy).
@Suite struct JournalSpinTests {
    /// Appends `count` records one at a time, each after the one before is durable and a pause longer than any
    /// poll: every completion leaves the writer with nothing to do.
    func appendOneAtATime(_ journal: Journal, count: Int) throws {
        for i in 0 ..< count {
            let results = appendAll(journal, [record(i)])
            guard case .success = results[0] else { throw JournalError.stopped }
            Thread.sleep(forTimeInterval: 0.003)
        }
    }

    @Test func aWriterPollsAfterEachCompletionAndCountsIt() throws {
        let dir = TempDir()
        let journal = try makeJournal(dir.path, engine: .blocking, spin: .microseconds(200))
        journal.start(resumeAfter: try replayAll(journal).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        defer { journal.stop() }
        try appendOneAtATime(journal, count: 20)
        let stats = journal.stats
        #expect(stats.spins >= 10, "one poll per completion that left the writer idle: \(stats.spins)")
        #expect(stats.spinsThatFoundWork <= stats.spins)
    }

    @Test func aWriterWithNoSpinNeverPolls() throws {
        // Proves `journal_spin_us = 0` (a standalone's bookies) switches the poll off: with the 50 µs default the
        // same appends poll once each.
        let dir = TempDir()
        let journal = try makeJournal(dir.path, engine: .blocking, spin: .zero)
        journal.start(resumeAfter: try replayAll(journal).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        defer { journal.stop() }
        try appendOneAtATime(journal, count: 20)
        #expect(journal.stats.syncs >= 20)
        #expect(journal.stats.spins == 0)
    }
}
