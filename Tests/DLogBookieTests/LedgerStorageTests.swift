import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Synchronization
import Testing

func entry(_ ledger: UInt64, _ e: Int64, size: Int = 64, lac: Int64? = nil) -> [UInt8] {
    EntryCodec.encode(EntryHeader(ledger: LedgerID(ledger), entry: EntryID(e), lastAddConfirmed: EntryID(lac ?? e - 1),
                                  ledgerLength: 0),
                      payload: (0..<size).map { UInt8(truncatingIfNeeded: Int(ledger) &* 13 &+ Int(e) &+ $0) })
}

let testKey = MasterKey(password: "test")

func keyRecord(_ ledger: UInt64) -> JournalRecord {
    var p = [UInt8]()
    p.appendBigEndian(ledger)
    return JournalRecord(kind: .masterKey, payload: p + testKey.bytes)
}

func addRecord(_ ledger: UInt64, _ e: Int64, size: Int = 64) -> JournalRecord {
    JournalRecord(kind: .add, payload: entry(ledger, e, size: size))
}

func read(_ s: LedgerStorage, _ l: UInt64, _ e: Int64) throws -> [UInt8]? {
    let (resolved, r) = s.readCached(LedgerID(l), EntryID(e))
    switch r {
    case .found(let b): return b
    case .noLedger, .noEntry: return nil
    case .onDisk(let files): return try s.readFromDisk(LedgerID(l), resolved, files: files)?.bytes
    }
}

@Suite struct LedgerStorageTests {
    /// A checkpoint with nothing new to record (idle ledgers) writes nothing to the ledger index, where it
    /// used to rewrite the manifest whole every time (most of an idle cluster's CPU with 10,000 streams); one
    /// after a change does, and a restart finds everything.
    @Test func anIdleCheckpointWritesNothing() throws {
        let dir = TempDir()
        do {
            let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.sub("l0")]), journalCount: 1)
            s.apply([keyRecord(1)] + (0..<10).map { addRecord(1, Int64($0)) }, journal: 0, through: nil)
            _ = try s.checkpoint()
            let written = s.indexGeneration
            for _ in 0..<3 { _ = try s.checkpoint() }
            #expect(s.indexGeneration == written, "idle checkpoints wrote the index")
            s.apply([addRecord(1, 10)], journal: 0, through: nil)
            _ = try s.checkpoint()
            #expect(s.indexGeneration == written + 1)
        }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.sub("l0")]), journalCount: 1)
        for e in Int64(0)...10 { #expect(try read(s, 1, e) == entry(1, e)) }
    }

    /// Entries read back from the cache before a checkpoint, from entry logs after it, and after reopening
    /// the storage from its manifest alone.
    @Test func checkpointThenReadFromEntryLogs() throws {
        let dir = TempDir()
        let config = LedgerStorage.Configuration(ledgerDirectories: [dir.sub("l0"), dir.sub("l1")])
        let s = try LedgerStorage(configuration: config, journalCount: 1)
        let position = JournalPosition(fileNumber: 3, offset: 8192, nextSeq: 77)
        var records = [keyRecord(1), keyRecord(2)]
        for e in 0..<500 { records.append(addRecord(1, Int64(e), size: e % 300)) }
        for e in stride(from: 0, to: 300, by: 3) { records.append(addRecord(2, Int64(e))) }  // striped: gaps
        s.apply(records, journal: 0, through: position)
        #expect(try read(s, 1, 123) == entry(1, 123, size: 123))
        let result = try s.checkpoint()
        #expect(result.entries == 600)
        #expect(result.marks == [position])
        #expect(s.cacheBytes == 0)
        for e in 0..<500 { #expect(try read(s, 1, Int64(e)) == entry(1, Int64(e), size: e % 300)) }
        #expect(try read(s, 2, 3) == entry(2, 3))
        #expect(try read(s, 2, 4) == nil)
        #expect(try read(s, 1, -1) == entry(1, 499, size: 499 % 300))

        // A second checkpoint in the other directory; then reopen from the manifest.
        s.apply([addRecord(1, 500)], journal: 0, through: JournalPosition(fileNumber: 3, offset: 12288, nextSeq: 78))
        _ = try s.checkpoint()
        let reopened = try LedgerStorage(configuration: config, journalCount: 1)
        #expect(reopened.journalMark(0) == JournalPosition(fileNumber: 3, offset: 12288, nextSeq: 78))
        #expect(reopened.entryLogCount == 2)
        for e in 0...500 { #expect(try read(reopened, 1, Int64(e)) != nil, "entry \(e)") }
        #expect(reopened.ledgerState(LedgerID(1))?.lastEntry == 500)
    }

    /// A bit flipped in an entry log's stored entry is reported as corruption on read, not served.
    @Test func damagedEntryLogIsDetected() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply([keyRecord(5), addRecord(5, 0, size: 1000)], journal: 0, through: nil)
        _ = try s.checkpoint()
        let path = dir.path + "/entrylog-1.log"
        let f = try File.open(path)
        var b = try f.pread(count: 1, at: 4096 + 500)
        b[0] ^= 0x40
        try b.withUnsafeBytes { try f.pwriteAll($0, at: 4096 + 500) }
        f.close()
        let bytes = try #require(try read(s, 5, 0))
        #expect(throws: EntryError.self) { try EntryCodec.validate(bytes) }
    }

    /// Deleting ledgers removes their entries from reads and, once a file holds no live ledger, the file.
    @Test func deleteReclaimsWholeFiles() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply([keyRecord(1), keyRecord(2)] + (0..<10).map { addRecord(1, Int64($0)) }, journal: 0, through: nil)
        _ = try s.checkpoint()
        s.apply((0..<10).map { addRecord(2, Int64($0)) }, journal: 0, through: nil)
        _ = try s.checkpoint()
        #expect(FileSystem.exists(dir.path + "/entrylog-1.log"))
        var del = [UInt8]()
        del.appendBigEndian(UInt64(1))
        s.apply([JournalRecord(kind: .delete, payload: del)], journal: 0, through: nil, replaying: true)
        #expect(try read(s, 1, 0) == nil)
        #expect(s.ledgerState(LedgerID(1)) == nil)
        let result = try s.checkpoint()
        #expect(result.removedFiles == 1)
        #expect(!FileSystem.exists(dir.path + "/entrylog-1.log"))
        #expect(FileSystem.exists(dir.path + "/entrylog-2.log"))
        #expect(try read(s, 2, 9) == entry(2, 9))
    }

    /// A long poll fires once LAC passes the previous value, from piggybacked or explicit LAC.
    @Test func longPollFiresOnLACAdvance() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply([keyRecord(1), addRecord(1, 0)], journal: 0, through: nil)
        let fired = Mutex<[(Int64, Int64)]>([])
        let token = s.watch(LedgerID(1), previous: -1) { lac, last in fired.withLock { $0.append((lac, last)) } }
        #expect(token != nil, "LAC is still -1 after entry 0 (its LAC is -1)")
        s.apply([addRecord(1, 1)], journal: 0, through: nil)  // carries LAC 0
        #expect(fired.withLock { $0.map(\.0) } == [0])
        #expect(!s.cancelWatch(LedgerID(1), id: token!), "a fired watch cannot be cancelled")
        // Explicit LAC advances it too.
        let t2 = s.watch(LedgerID(1), previous: 0) { lac, _ in fired.withLock { $0.append((lac, -9)) } }
        var p = [UInt8]()
        p.appendBigEndian(UInt64(1))
        p.appendBigEndian(Int64(1))
        s.apply([JournalRecord(kind: .explicitLAC, payload: p)], journal: 0, through: nil)
        #expect(fired.withLock { $0.last?.0 } == 1)
        #expect(t2 != nil)
        // Already past: answered at once.
        #expect(s.watch(LedgerID(1), previous: 0) { _, _ in } == nil)
        let t3 = s.watch(LedgerID(1), previous: 5) { _, _ in Issue.record("must not fire") }
        #expect(s.cancelWatch(LedgerID(1), id: t3!))
    }
}

@Suite struct CheckpointFailureTests {
    /// A checkpoint that cannot write its entry log keeps every entry in memory and the old marks; the next
    /// one succeeds and the entries are then on disk.
    @Test func failedCheckpointLosesNothing() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply([keyRecord(1)] + (0..<50).map { addRecord(1, Int64($0)) }, journal: 0,
                through: JournalPosition(fileNumber: 1, offset: 8192, nextSeq: 52))
        // A directory where the entry log's temp file must go makes the write fail with EISDIR.
        try FileSystem.makeDirectory(dir.path + "/entrylog-1.log.tmp")
        #expect(throws: SystemError.self) { try s.checkpoint() }
        #expect(s.journalMark(0) == nil, "marks must not move when the checkpoint failed")
        s.apply([addRecord(1, 50)], journal: 0, through: JournalPosition(fileNumber: 1, offset: 12288, nextSeq: 53))
        for e in 0...50 { #expect(try read(s, 1, Int64(e)) == entry(1, Int64(e)), "entry \(e) while failing") }
        try FileManager.default.removeItem(atPath: dir.path + "/entrylog-1.log.tmp")
        let result = try s.checkpoint()
        #expect(result.entries == 51)
        #expect(s.cacheBytes == 0)
        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        for e in 0...50 { #expect(try read(reopened, 1, Int64(e)) == entry(1, Int64(e)), "entry \(e) after reopen") }
    }
}

@Suite struct IndexFailureTests {
    /// An index write that fails keeps the files it dropped until a later write persists, then removes them:
    /// no file is deleted while the index on disk still lists it, and none leaks. The failed append may have
    /// reached one copy and not the other, so the next write is a snapshot of every copy, and a power cut
    /// after it loses nothing.
    @Test func droppedFilesWaitForAPersistedIndex() throws {
        let disk = SimulatedDisk()
        var config = LedgerStorage.Configuration(ledgerDirectories: ["/l0"])
        config.disk = disk
        let s = try LedgerStorage(configuration: config, journalCount: 1)
        s.apply([keyRecord(1), addRecord(1, 0)], journal: 0, through: nil)
        _ = try s.checkpoint()
        s.apply([keyRecord(2), addRecord(2, 0), addRecord(2, 1)], journal: 0, through: nil)
        _ = try s.checkpoint()
        var p = [UInt8]()
        p.appendBigEndian(UInt64(1))
        s.apply([JournalRecord(kind: .delete, payload: p)], journal: 0, through: nil, replaying: true)
        // The second copy's sync fails: the first holds the record, the second may not.
        disk.inject(.init(.dataSync, pathContains: IndexStore.copyName))
        #expect(throws: SystemError.self) { try s.checkpoint() }
        #expect(disk.exists("/l0/entrylog-1.log"), "still listed by the index on disk")
        let renamesBefore = disk.calls(.rename)
        let result = try s.checkpoint()
        #expect(result.removedFiles == 1)
        #expect(!disk.exists("/l0/entrylog-1.log"))
        #expect(disk.calls(.rename) == renamesBefore + 2, "the write after a failure is a snapshot of both copies")
        disk.crash(seed: 1)
        let reopened = try LedgerStorage(configuration: config, journalCount: 1)
        #expect(reopened.startReport.manifestNotes.isEmpty, "\(reopened.startReport.manifestNotes)")
        #expect(reopened.ledgerState(LedgerID(1)) == nil)
        #expect(try read(reopened, 2, 1) == entry(2, 1))
    }
}

@Suite struct IncrementalIndexTests {
    /// A checkpoint writes what changed, not every ledger: with 5,000 ledgers, one that changes 10 of them
    /// appends a record of about a kilobyte to each copy and rewrites nothing; the JSON manifest it replaced
    /// was about 230 bytes per ledger, all of them, at every checkpoint.
    @Test func aCheckpointAppendsOnlyWhatChanged() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        s.apply((1...5_000).flatMap { [keyRecord(UInt64($0)), addRecord(UInt64($0), 0, size: 8)] }, journal: 0, through: nil)
        _ = try s.checkpoint()
        let paths = indexPaths([dir.path])
        let before = try paths.map { try FileSystem.readAll($0) }
        s.apply((1...10).map { addRecord(UInt64($0 * 400), 1, size: 8) }, journal: 0, through: nil)
        _ = try s.checkpoint()
        for (path, old) in zip(paths, before) {
            let now = try FileSystem.readAll(path)
            #expect(now.count > old.count && now.count - old.count < 2_048, "\(path) grew by \(now.count - old.count)")
            #expect(Array(now.prefix(old.count)) == old, "\(path): the bytes before the new record changed")
        }
        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(reopened.ledgerCount == 5_000)
        for l in [UInt64(400), 4_000, 4_999] { #expect(try read(reopened, l, 0) == entry(l, 0, size: 8)) }
        #expect(try read(reopened, 4_000, 1) == entry(4_000, 1, size: 8))
        #expect(reopened.ledgerState(LedgerID(4_000))?.lastEntry == 1)
    }

    /// The ledger index does not depend on how the ledger state is sharded: a snapshot merges the shards' tables
    /// in id order, a delta gathers their changes, and storage reopened with another shard count (1 or 7) finds
    /// every ledger, state and entry a 4-shard one wrote, deletes included.
    @Test func theIndexIsTheSameWhateverTheShards() throws {
        let dir = TempDir()
        let config = { (shards: Int) in LedgerStorage.Configuration(ledgerDirectories: [dir.path], shards: shards) }
        let s = try LedgerStorage(configuration: config(4), journalCount: 1)
        s.apply((1...3_000).flatMap { [keyRecord(UInt64($0)), addRecord(UInt64($0), 0, size: 8)] }, journal: 0, through: nil)
        #expect(try s.checkpoint().indexSnapshot, "a fresh index starts with a snapshot")
        s.apply((1...300).map { addRecord(UInt64($0 * 10), 1, size: 8) }, journal: 0, through: nil)
        for l in stride(from: UInt64(7), through: 3_000, by: 100) {
            #expect(s.take(.delete(LedgerID(l))) { _ in nil }.refusal == nil)
        }
        let second = try s.checkpoint()
        #expect(!second.indexSnapshot && second.indexBytes > 0)
        let expected = s.ledgerIDs.map { ($0, s.ledgerState($0)) }
        #expect(expected.count == 3_000 - 30)
        for shards in [1, 7] {
            let reopened = try LedgerStorage(configuration: config(shards), journalCount: 1)
            let found = reopened.ledgerIDs.map { ($0, reopened.ledgerState($0)) }
            #expect(found.map(\.0) == expected.map(\.0), "\(shards) shards: the ledgers")
            #expect(zip(found, expected).allSatisfy { $0.1 == $1.1 }, "\(shards) shards: their states")
            #expect(try read(reopened, 2_990, 1) == entry(2_990, 1, size: 8))
            #expect(try read(reopened, 2_999, 0) == entry(2_999, 0, size: 8))
            #expect(try read(reopened, 107, 0) == nil, "a deleted ledger stays deleted")
        }
    }
}
