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

@Suite struct ManifestDamageTests {
    /// The defect this guards against: an entry-log id in the manifest flipped from 2 to 0, and the bookie
    /// deleted the healthy entrylog-2.log as an orphan. Now the seal finds the damage, the other copy is used,
    /// and every file and entry is still there.
    @Test func aChangedEntryLogIDIsFoundAndTheCopyUsed() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let path = dir.path + "/" + ManifestStore.fileName
        var text = String(decoding: try FileSystem.readAll(path), as: UTF8.self)
        let range = try #require(text.range(of: "\"id\":2"))
        text.replaceSubrange(range, with: "\"id\":0")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))

        let reopened = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(reopened.startReport.manifestNotes.count == 1)
        #expect(reopened.startReport.manifestNotes.first?.contains(path) == true)
        #expect(reopened.startReport.removed.isEmpty && reopened.startReport.quarantined.isEmpty)
        #expect(FileSystem.exists(dir.path + "/entrylog-2.log"))
        #expect(try allEntriesRead(reopened))
        // The next checkpoint heals the damaged copy.
        _ = try reopened.checkpoint()
        #expect(ManifestStore(directories: [dir.path]).read(path).isIntact)
    }

    /// Any single flipped bit in either copy (200 seeded positions each) is found by the seal: start-up uses
    /// the other copy and loses nothing. The same bit flipped in both copies is refused, naming both files,
    /// and the refusal changes nothing on disk: the manifest is never half-believed.
    @Test func everyFlippedBitIsFoundInEitherCopy() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("everyFlippedBitIsFoundInEitherCopy seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        let dir = TempDir()
        let dirs = [dir.sub("l0"), dir.sub("l1")]
        try twoFiles(dirs)
        let store = ManifestStore(directories: dirs)
        let primary = try FileSystem.readAll(store.primaryPath)
        let copy = try FileSystem.readAll(store.copyPath)
        #expect(primary == copy)
        let before = dirs.map(listing)
        for _ in 0..<200 {
            let offset = Int.random(in: 0..<primary.count, using: &rng)
            let bit = Int.random(in: 0..<8, using: &rng)
            for damaged in [store.primaryPath, store.copyPath] {
                try flipBit(damaged, at: offset, bit: bit)
                let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
                #expect(s.startReport.manifestNotes.count == 1, "bit \(bit) of byte \(offset) in \(damaged)")
                #expect(s.ledgerCount == 2 && s.entryLogCount == 2)
                try flipBit(damaged, at: offset, bit: bit)
            }
            try flipBit(store.primaryPath, at: offset, bit: bit)
            try flipBit(store.copyPath, at: offset, bit: bit)
            let refusal = #expect(throws: StorageCorruption.self) {
                try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
            }
            #expect(refusal?.description.contains(store.primaryPath) == true)
            #expect(refusal?.description.contains(store.copyPath) == true)
            #expect(dirs.map(listing) == before, "a refused start changed files")
            try flipBit(store.primaryPath, at: offset, bit: bit)
            try flipBit(store.copyPath, at: offset, bit: bit)
        }
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: dirs), journalCount: 1)
        #expect(try allEntriesRead(s))
    }

    /// The other single-bit defect: a flipped bit in a ledger's master key. The seal refuses that copy, so
    /// the key in force is the one the ledger was created with.
    @Test func aFlippedMasterKeyBitIsNotBelieved() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let path = dir.path + "/" + ManifestStore.fileName
        var text = String(decoding: try FileSystem.readAll(path), as: UTF8.self)
        let key = try #require(text.range(of: "\"masterKey\":["))
        let firstDigit = text[key.upperBound...].firstIndex { $0.isNumber }
        let digit = try #require(firstDigit)
        let old = text[digit]
        text.replaceSubrange(digit...digit, with: old == "1" ? "3" : "1")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.ledgerState(LedgerID(1))?.masterKey == testKey.bytes)
        #expect(s.ledgerState(LedgerID(2))?.masterKey == testKey.bytes)
    }

    /// An unlisted entry log the manifest cannot prove to be garbage (its id is below the next id, and it is
    /// not on the removal list) is moved to quarantine/ and reported, never unlinked.
    @Test func unprovenFilesAreQuarantined() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let store = ManifestStore(directories: [dir.path])
        guard case .intact(var m) = store.read(store.primaryPath) else { Issue.record("manifest unreadable"); return }
        let bytes = try FileSystem.readAll(dir.path + "/entrylog-1.log")
        m.entryLogs.removeAll { $0.id == 1 }
        m.generation += 1
        try store.write(m)
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.startReport.quarantined.count == 1)
        #expect(s.startReport.removed.isEmpty)
        #expect(!FileSystem.exists(dir.path + "/entrylog-1.log"))
        #expect(try FileSystem.readAll(dir.path + "/quarantine/entrylog-1.log") == bytes)
        #expect(FileSystem.directorySyncs(dir.path + "/quarantine") >= 1)
    }

    /// A file the manifest lists as dropped (removed by a checkpoint whose unlink a crash cut short) is
    /// proven garbage: removed at start, not quarantined.
    @Test func filesOnTheRemovalListAreRemoved() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let store = ManifestStore(directories: [dir.path])
        guard case .intact(var m) = store.read(store.primaryPath) else { Issue.record("manifest unreadable"); return }
        m.entryLogs.removeAll { $0.id == 1 }
        m.ledgers[1] = nil
        m.removing = [RemovedEntryLog(id: 1, directory: 0)]
        m.generation += 1
        try store.write(m)
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

    /// With both manifest copies gone but entry logs present, start-up refuses instead of starting empty.
    @Test func entryLogsWithoutAManifestAreRefused() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        try FileSystem.remove(dir.path + "/" + ManifestStore.fileName)
        try FileSystem.remove(dir.path + "/" + ManifestStore.copyName)
        #expect(throws: StorageCorruption.self) {
            try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        }
        #expect(FileSystem.exists(dir.path + "/entrylog-1.log") && FileSystem.exists(dir.path + "/entrylog-2.log"))
    }

    /// An unsealed version 1 `checkpoint.json` (written by earlier releases) is read once and sealed into two
    /// copies by the next checkpoint, which removes it.
    @Test func anUnsealedManifestIsUpgraded() throws {
        let dir = TempDir()
        try twoFiles([dir.path])
        let store = ManifestStore(directories: [dir.path])
        guard case .intact(var m) = store.read(store.primaryPath) else { Issue.record("manifest unreadable"); return }
        m.version = 1
        try Data(try JSONEncoder().encode(m)).write(to: URL(fileURLWithPath: store.legacyPath))
        try FileSystem.remove(store.primaryPath)
        try FileSystem.remove(store.copyPath)
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        #expect(s.startReport.manifestNotes.first?.contains("unsealed") == true)
        #expect(try allEntriesRead(s))
        _ = try s.checkpoint()
        #expect(!FileSystem.exists(store.legacyPath))
        #expect(store.read(store.primaryPath).isIntact && store.read(store.copyPath).isIntact)
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
    /// ledger directories, which no manifest copy or new entry log touches).
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

extension ManifestStore.Copy {
    var isIntact: Bool {
        if case .intact = self { return true }
        return false
    }
}
