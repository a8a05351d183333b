import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogSimulation
import DLogWire
import Foundation
import Logging
import Testing

func fileSize(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1 }

@Suite struct CompactionTests {
    /// A mostly-dead entry log is rewritten with only its live entries, the old file removed and its space
    /// reclaimed; every live entry still reads back, before and after a reopen.
    @Test func compactsMostlyDeadFile() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        var records = (1...10).map { keyRecord(UInt64($0)) }
        for l in 1...10 { for e in 0..<100 { records.append(addRecord(UInt64(l), Int64(e), size: 500)) } }
        s.apply(records, journal: 0, through: nil)
        _ = try s.checkpoint()
        let before = fileSize(dir.path + "/entrylog-1.log")
        #expect(s.compactionCandidate(threshold: 0.5) == nil, "a fully live file is not a candidate")
        for l in 1...8 {
            var p = [UInt8]()
            p.appendBigEndian(UInt64(l))
            s.apply([JournalRecord(kind: .delete, payload: p)], journal: 0, through: nil, replaying: true)
        }
        let id = try #require(s.compactionCandidate(threshold: 0.5))
        let result = try #require(try s.compact(id, bytesPerSecond: 1 << 30))
        #expect(result.compactedFile == 1)
        #expect(!FileSystem.exists(dir.path + "/entrylog-1.log"))
        let after = fileSize(dir.path + "/entrylog-\(result.newFile!).log")
        #expect(after > 0 && after < before / 3, "\(after) of \(before) bytes kept")
        for l in 9...10 { for e in 0..<100 { #expect(try read(s, UInt64(l), Int64(e)) == entry(UInt64(l), Int64(e), size: 500)) } }
        #expect(try read(s, 1, 0) == nil)
        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(try read(reopened, 10, 99) == entry(10, 99, size: 500))
        #expect(reopened.entryLogCount == 1)
    }

    /// The read budget paces the copy, and the storage's clock does the waiting: on a simulated clock, which
    /// only sleeps move, 400 KB of live data at 2 MB/s moves time on by what the budget allows (0.2 s, within the
    /// pacer's millisecond), and no real time. Scrub is paced the same way.
    @Test func compactionAndScrubArePacedOnTheStorageClock() throws {
        let dir = TempDir()
        let clock = SimulatedClock()
        var config = LedgerStorage.Configuration(ledgerDirectories: [dir.path])
        config.clock = clock
        let s = try LedgerStorage(configuration: config, journalCount: 1)
        s.apply([keyRecord(1), keyRecord(2)] + (0..<100).map { addRecord(1, Int64($0), size: 4000) }
                + (0..<400).map { addRecord(2, Int64($0), size: 4000) }, journal: 0, through: nil)
        _ = try s.checkpoint()
        var p = [UInt8]()
        p.appendBigEndian(UInt64(2))
        s.apply([JournalRecord(kind: .delete, payload: p)], journal: 0, through: nil, replaying: true)
        let result = try #require(try s.compact(1, bytesPerSecond: 2_000_000))
        #expect(result.liveBytes > 400_000)
        let due = Duration.milliseconds(result.liveBytes * 1000 / 2_000_000)
        #expect(clock.elapsedTime <= due && clock.elapsedTime >= due - .milliseconds(1), "\(clock.elapsedTime) for \(due)")

        let before = clock.elapsedTime
        let scrubbed = try s.scrub(bytesPerSecond: 1_000_000)
        #expect(scrubbed.damaged.isEmpty && scrubbed.bytesDone >= Int64(result.liveBytes))
        let scrubDue = Duration.milliseconds(scrubbed.bytesDone * 1000 / 1_000_000)
        #expect(clock.elapsedTime - before <= scrubDue && clock.elapsedTime - before >= scrubDue - .milliseconds(1))
    }
}

@Suite struct RestartTests {
    /// With 2 GiB in entry logs, a restart reads the ledger index and the journal since the checkpoint only:
    /// no entry log is opened, replay reads no journal bytes, and the index stays small. (The time is
    /// printed for the record; the structural checks are what can fail.)
    @Test func restartDoesNotScanStoredData() throws {
        let dir = TempDir()
        let ledgers = dir.sub("ledgers")
        let storage = try LedgerStorage(configuration: .init(ledgerDirectories: [ledgers]), journalCount: 1)
        let megabyte = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        var stored = 0
        for batch in 0..<8 {
            var records = [keyRecord(UInt64(batch + 1))]
            for e in 0..<256 {
                records.append(JournalRecord(kind: .add, payload: EntryCodec.encode(
                    EntryHeader(ledger: LedgerID(UInt64(batch + 1)), entry: EntryID(Int64(e)),
                                lastAddConfirmed: EntryID(Int64(e) - 1), ledgerLength: 0), payload: megabyte)))
            }
            storage.apply(records, journal: 0, through: nil)
            stored += try storage.checkpoint().bytes
        }
        #expect(stored >= 2 << 30)
        let indexBytes = fileSize(ledgers + "/" + IndexStore.fileName)
        #expect(indexBytes > 0 && indexBytes < 64 * 1024)

        let started = ContinuousClock.now
        let config = Bookie.Configuration(journal: .init(directory: dir.sub("journal"), fileBytes: 4 << 20, filesMax: 4),
                                          journalDirectories: [dir.sub("journal")],
                                          storage: .init(ledgerDirectories: [ledgers]))
        let bookie = try Bookie(configuration: config, logger: Logger(label: "test"))
        try bookie.start { _ in }
        let elapsed = ContinuousClock.now - started
        print("restart with \(stored >> 20) MiB stored took \(elapsed)")
        #expect(bookie.storage.openEntryLogCount == 0, "restart must not open entry logs")
        #expect(bookie.storage.ledgerCount == 8)
        // One read opens exactly the one file that holds the entry.
        let response = bookie.readEntryBlocking(ledger: LedgerID(5), entry: EntryID(200))
        #expect(response == .entry(EntryCodec.encode(EntryHeader(ledger: LedgerID(5), entry: EntryID(200),
                                                                 lastAddConfirmed: EntryID(199), ledgerLength: 0),
                                                     payload: megabyte)))
        #expect(bookie.storage.openEntryLogCount == 1)
        bookie.stop()
    }
}

@Suite struct OrphanTests {
    /// Entry logs written after the manifest (a checkpoint that died before persisting it) and temporary
    /// files are removed at start, because the journal still holds what they had; listed ones are kept.
    @Test func filesWrittenAfterTheManifestAreRemovedAtStart() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply([keyRecord(1), addRecord(1, 0)], journal: 0, through: nil)
        _ = try s.checkpoint()
        try FileSystem.writeAtomically(dir.path + "/entrylog-9.log", [1, 2, 3])
        try FileSystem.writeAtomically(dir.path + "/entrylog-10.log.tmp", [1])
        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(reopened.startReport.removed.count == 2, "\(reopened.startReport)")
        #expect(reopened.startReport.quarantined.isEmpty)
        #expect(!FileSystem.exists(dir.path + "/entrylog-9.log") && !FileSystem.exists(dir.path + "/entrylog-10.log.tmp"))
        #expect(FileSystem.exists(dir.path + "/entrylog-1.log"))
        #expect(try read(reopened, 1, 0) == entry(1, 0))
    }

    /// A small file whose few entries are all live is never a compaction candidate, however large its
    /// fixed overhead; a compacted file is not picked again.
    @Test func overheadDoesNotMakeFilesLookDead() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply([keyRecord(1), keyRecord(2), addRecord(1, 0, size: 10), addRecord(2, 0, size: 10)], journal: 0, through: nil)
        _ = try s.checkpoint()
        #expect(s.compactionCandidate(threshold: 0.99) == nil)
        var p = [UInt8]()
        p.appendBigEndian(UInt64(2))
        s.apply([JournalRecord(kind: .delete, payload: p)], journal: 0, through: nil, replaying: true)
        let id = try #require(s.compactionCandidate(threshold: 0.9))
        _ = try s.compact(id, bytesPerSecond: 1 << 30)
        #expect(s.compactionCandidate(threshold: 0.9) == nil)
    }
}
