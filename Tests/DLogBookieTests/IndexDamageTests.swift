import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Testing

/// Storage with two entry logs (ledger 1 in the first, ledger 2 in the second), closed again.
private func twoFiles(_ dirs: [String]) throws {
    let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
    s.apply([keyRecord(1), keyRecord(2)] + (0..<20).map { addRecord(1, Int64($0)) }, journal: 0, through: nil)
    _ = try s.checkpoint()
    s.apply((0..<20).map { addRecord(2, Int64($0)) }, journal: 0, through: nil)
    _ = try s.checkpoint()
}

private func flipBit(_ path: String, at offset: Int, bit: Int) throws {
    var bytes = try FileSystem.readAll(path)
    bytes[offset] ^= UInt8(1 << bit)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func allEntriesRead(_ s: LedgerStorage) throws -> Bool {
    for l in [UInt64(1), 2] { for e in 0..<20 where try read(s, l, Int64(e)) != entry(l, Int64(e)) { return false } }
    return true
}

private func listing(_ dir: String) -> [String] { (try? FileSystem.list(dir)) ?? [] }

/// The last occurrence of `pattern` in `bytes`.
private func lastIndex(of pattern: [UInt8], in bytes: [UInt8]) -> Int? {
    guard bytes.count >= pattern.count else { return nil }
    return stride(from: bytes.count - pattern.count, through: 0, by: -1).first { Array(bytes[$0 ..< $0 + pattern.count]) == pattern }
}

@Suite struct IndexDamageTests {
    /// The defect this guards against: an entry-log id in the checkpoint state flipped from 2 to 0, and the
    /// bookie deleted the healthy entrylog-2.log as an orphan. Now the record's CRC finds the damage, the
    /// other copy is used, and every file and entry is still there.
    @Test func aChangedEntryLogIDIsFoundAndTheCopyUsed() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let path = indexPaths([dir.path])[0]
        var bytes = try FileSystem.readAll(path)
        var two = [UInt8]()
        two.appendBigEndian(UInt64(2))
        let at = try #require(lastIndex(of: two, in: bytes))
        bytes[at + 7] = 0
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(reopened.startReport.manifestNotes.count == 1)
        #expect(reopened.startReport.manifestNotes.first?.contains(path) == true)
        #expect(reopened.startReport.removed.isEmpty && reopened.startReport.quarantined.isEmpty)
        #expect(FileSystem.exists(dir.path + "/entrylog-2.log"))
        #expect(try allEntriesRead(reopened))
        // The start-up checkpoint heals the damaged copy: both end cleanly at the same generation.
        _ = try reopened.checkpoint()
        let copies = indexPaths([dir.path]).map { IndexFile.read($0, disk: PosixDisk(), directories: 1) }
        #expect(copies[0].generation != nil && copies[0].generation == copies[1].generation)
    }

    /// Any single flipped bit in either copy (200 seeded positions each) is found by the CRCs: start-up uses
    /// the other copy and loses nothing. The same bit flipped in both copies is refused, naming both files,
    /// and the refusal changes nothing on disk: the index is never half-believed. That holds for a bit in
    /// the last record too, which alone could pass for a write a crash cut short.
    @Test func everyFlippedBitIsFoundInEitherCopy() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("everyFlippedBitIsFoundInEitherCopy seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        let dir = TempDir()
        let dirs = [dir.sub("l0"), dir.sub("l1")]
        try twoFiles(dirs)
        let paths = indexPaths(dirs)
        let primary = try FileSystem.readAll(paths[0])
        #expect(try primary == FileSystem.readAll(paths[1]))
        let before = dirs.map(listing)
        for _ in 0..<200 {
            let offset = Int.random(in: 0..<primary.count, using: &rng)
            let bit = Int.random(in: 0..<8, using: &rng)
            for damaged in paths {
                try flipBit(damaged, at: offset, bit: bit)
                let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
                #expect(s.startReport.manifestNotes.count == 1, "bit \(bit) of byte \(offset) in \(damaged)")
                #expect(s.ledgerCount == 2 && s.entryLogCount == 2)
                try flipBit(damaged, at: offset, bit: bit)
            }
            for path in paths { try flipBit(path, at: offset, bit: bit) }
            let refusal = #expect(throws: StorageCorruption.self, "bit \(bit) of byte \(offset) in both") {
                try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
            }
            for path in paths { #expect(refusal?.description.contains(path) == true) }
            #expect(dirs.map(listing) == before, "a refused start changed files")
            for path in paths { try flipBit(path, at: offset, bit: bit) }
        }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        #expect(try allEntriesRead(s))
    }

    /// A damaged record with another after it is damage, not a torn end: that copy is not used even for
    /// the generations before it, and with both copies so damaged start-up refuses.
    @Test func aDamagedRecordInTheMiddleIsNotTakenForATornEnd() throws {
        let dir = TempDir()
        let dirs = [dir.sub("l0"), dir.sub("l1")]
        try twoFiles(dirs)
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        s.apply([keyRecord(3), addRecord(3, 0)], journal: 0, through: nil)
        _ = try s.checkpoint()
        let paths = indexPaths(dirs)
        guard case .intact(let contents) = IndexFile.read(paths[0], disk: PosixDisk(), directories: 2) else {
            Issue.record("index unreadable"); return
        }
        #expect(contents.deltaBytes > 0, "the start-up snapshot and a delta after it")
        // A byte inside the snapshot's body would be found too; this one is in the first delta's body.
        let middle = IndexFormat.fileHeaderBytes + contents.snapshotBytes + IndexFormat.recordHeaderBytes + 2
        try flipBit(paths[0], at: middle, bit: 3)
        guard case .damaged(let why) = IndexFile.read(paths[0], disk: PosixDisk(), directories: 2) else {
            Issue.record("a damaged middle record was believed"); return
        }
        #expect(why.contains("follows"))
        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        #expect(reopened.startReport.manifestNotes.count == 1)
        #expect(try read(reopened, 3, 0) == entry(3, 0))
        try flipBit(paths[0], at: middle, bit: 3)
        for path in paths { try flipBit(path, at: middle, bit: 3) }
        #expect(throws: StorageCorruption.self) { try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1) }
    }

    /// The other single-bit defect: a flipped bit in a ledger's master key. The CRC refuses that copy, so
    /// the key in force is the one the ledger was created with.
    @Test func aFlippedMasterKeyBitIsNotBelieved() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let path = indexPaths([dir.path])[0]
        var bytes = try FileSystem.readAll(path)
        let at = try #require(lastIndex(of: testKey.bytes, in: bytes))
        bytes[at] ^= 0x02
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.ledgerState(LedgerID(1))?.masterKey == testKey.bytes)
        #expect(s.ledgerState(LedgerID(2))?.masterKey == testKey.bytes)
    }

    /// An unlisted entry log the index cannot prove to be garbage (its id is below the next id, and it is
    /// not on the removal list) is moved to quarantine/ and reported, never unlinked.
    @Test func unprovenFilesAreQuarantined() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let bytes = try FileSystem.readAll(dir.path + "/entrylog-1.log")
        try rewriteIndex([dir.path]) { $0.entryLogs.removeAll { $0.id == 1 } }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.startReport.quarantined.count == 1)
        #expect(s.startReport.removed.isEmpty)
        #expect(!FileSystem.exists(dir.path + "/entrylog-1.log"))
        #expect(try FileSystem.readAll(dir.path + "/quarantine/entrylog-1.log") == bytes)
        #expect(FileSystem.directorySyncs(dir.path + "/quarantine") >= 1)
    }

    /// A file the index lists as dropped (removed by a checkpoint whose unlink a crash cut short) is
    /// proven garbage: removed at start, not quarantined.
    @Test func filesOnTheRemovalListAreRemoved() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        try rewriteIndex([dir.path]) { m in
            m.entryLogs.removeAll { $0.id == 1 }
            m.ledgers[1] = nil
            m.removing = [RemovedEntryLog(id: 1, directory: 0)]
        }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.startReport.removed.count == 1 && s.startReport.quarantined.isEmpty)
        #expect(!FileSystem.exists(dir.path + "/entrylog-1.log"))
        #expect(try read(s, 2, 19) == entry(2, 19))
    }

    /// A file the manifest lists but the disk lacks is refused by name: answering NO_ENTRY for acknowledged
    /// entries would let recovery treat them as never written.
    @Test func aListedFileThatIsMissingIsRefused() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        try FileSystem.remove(dir.path + "/entrylog-2.log")
        let refusal = #expect(throws: StorageCorruption.self) {
            try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        }
        #expect(refusal?.path == dir.path + "/entrylog-2.log")
        #expect(FileSystem.exists(dir.path + "/entrylog-1.log"))
    }

    /// With every index copy gone but entry logs present, start-up refuses instead of starting empty.
    @Test func entryLogsWithoutAnIndexAreRefused() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        for path in indexPaths([dir.path]) { try FileSystem.remove(path) }
        #expect(throws: StorageCorruption.self) {
            try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        }
        #expect(FileSystem.exists(dir.path + "/entrylog-1.log") && FileSystem.exists(dir.path + "/entrylog-2.log"))
    }

    /// The sealed JSON manifest of earlier versions (two copies) is read once; the first checkpoint writes
    /// the ledger index to every copy and then removes the JSON files; a restart reads the index.
    @Test(arguments: [1, 2]) func aJSONManifestIsUpgraded(directoryCount: Int) throws {
        let dir = TempDir()
        let dirs = (0..<directoryCount).map { dir.sub("l\($0)") }
        try twoFiles(dirs)
        var store = IndexStore(directories: dirs, disk: PosixDisk())
        var m = try store.load().manifest
        m.generation = 7
        let legacy = ManifestStore(directories: dirs)
        try legacy.write(m)
        for path in indexPaths(dirs) { try FileSystem.remove(path) }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        #expect(s.startReport.manifestNotes.first?.contains("JSON checkpoint manifest") == true)
        #expect(try allEntriesRead(s))
        _ = try s.checkpoint()
        #expect(!FileSystem.exists(legacy.primaryPath) && !FileSystem.exists(legacy.copyPath))
        #expect(s.indexGeneration == 8)
        for path in indexPaths(dirs) { #expect(IndexFile.read(path, disk: PosixDisk(), directories: dirs.count).generation == 8) }
        let again = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        #expect(again.startReport.manifestNotes.isEmpty)
        #expect(try allEntriesRead(again))
        // A crash between the first snapshot and the removal of the JSON files: the index is used, and the next
        // checkpoint removes them.
        try legacy.write(m)
        let afterCrash = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        #expect(afterCrash.indexGeneration == 8 && afterCrash.ledgerCount == 2)
        _ = try afterCrash.checkpoint()
        #expect(!FileSystem.exists(legacy.primaryPath) && !FileSystem.exists(legacy.copyPath))
    }

    /// An unsealed version 1 `checkpoint.json` (written by earlier releases) is read once; the next
    /// checkpoint writes the index and removes it.
    @Test func anUnsealedManifestIsUpgraded() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        var store = IndexStore(directories: [dir.path], disk: PosixDisk())
        var m = try store.load().manifest
        m.version = 1
        let legacy = ManifestStore(directories: [dir.path])
        try Data(try JSONEncoder().encode(m)).write(to: URL(fileURLWithPath: legacy.legacyPath))
        for path in indexPaths([dir.path]) { try FileSystem.remove(path) }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.startReport.manifestNotes.first?.contains("unsealed") == true)
        #expect(try allEntriesRead(s))
        _ = try s.checkpoint()
        #expect(!FileSystem.exists(legacy.legacyPath))
        for path in indexPaths([dir.path]) { #expect(IndexFile.read(path, disk: PosixDisk(), directories: 1).isIntact) }
    }

    /// Creating a directory makes it durable: the parent of every directory it creates is fsynced.
    @Test func makeDirectorySyncsEachParent() throws {
        let dir = TempDir()
        try FileSystem.makeDirectory(dir.path + "/a/b/c")
        for parent in [dir.path, dir.path + "/a", dir.path + "/a/b"] {
            #expect(FileSystem.directorySyncs(parent) == 1, "\(parent)")
        }
        try FileSystem.makeDirectory(dir.path + "/a/b/c")
        #expect(FileSystem.directorySyncs(dir.path + "/a/b") == 1, "nothing created, nothing synced")
    }

    /// Unlinking a dropped entry log is made durable by syncing its directory (here the middle of three
    /// ledger directories, which no new entry log touches; its index copy is appended to, not renamed).
    @Test func unlinksOfEntryLogsAreSynced() throws {
        let dir = TempDir()
        let dirs = [dir.sub("l0"), dir.sub("l1"), dir.sub("l2")]
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        s.apply([keyRecord(1), addRecord(1, 0)], journal: 0, through: nil)
        _ = try s.checkpoint()
        #expect(FileSystem.exists(dirs[1] + "/entrylog-1.log"))
        var p = [UInt8]()
        p.appendBigEndian(UInt64(1))
        s.apply([JournalRecord(kind: .delete, payload: p)], journal: 0, through: nil, replaying: true)
        let before = FileSystem.directorySyncs(dirs[1])
        #expect(try s.checkpoint().removedFiles == 1)
        #expect(!FileSystem.exists(dirs[1] + "/entrylog-1.log"))
        #expect(FileSystem.directorySyncs(dirs[1]) == before + 1)
    }
}
