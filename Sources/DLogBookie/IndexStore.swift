import DLogIO
import Dispatch
import Synchronization

/// The ledger index on disk (`IndexFormat`): the checkpoint state, in one copy per ledger directory,
///
///     <each ledger dir>/ledgers.index
///     <the ledger dir>/ledgers.index.copy     (a second copy, only when there is one ledger directory)
///
/// A checkpoint appends the delta of what it changed to every copy, one after the other, each synced; a
/// snapshot of everything replaces each copy atomically (temporary file, fsync, rename, directory fsync) when
/// the deltas have grown to half the snapshot (so a restart reads at most 1.5 snapshots), when a copy is
/// missing, damaged or behind, and after any failed write (after which the copies may differ). Journals are
/// released and dropped entry logs unlinked only after every copy holds the record, so any intact copy
/// describes files that all exist and journals that still hold everything after its marks. A crash cuts short
/// the last record of one copy at most, so the newest generation is whole in some copy. `load()` decides:
///
/// | copies | result |
/// |---|---|
/// | one ends cleanly at the newest generation any copy reaches | that one; each damaged, missing, older or cut-short copy is noted, and the start-up checkpoint writes a snapshot to every copy |
/// | intact ones, but each at the newest generation ends in a bad record | refused, naming each file: that record may have been whole and acted upon |
/// | none intact, one or more damaged | refused, naming each file and what is wrong with it |
/// | none at all | the JSON manifest of earlier versions (`ManifestStore`) if there is one, else a new bookie; the first checkpoint writes a snapshot, then removes the JSON files |
///
/// JSON manifest files beside a usable index (a crash between the first snapshot and their removal) are ignored,
/// and the start-up checkpoint writes a snapshot, which removes them.
///
/// Used only under the storage's checkpoint lock.
struct IndexStore: Sendable {
    static let fileName = "ledgers.index"
    static let copyName = "ledgers.index.copy"
    /// Deltas are appended until they pass half the snapshot, and at least this much.
    static let deltaBytesMin = 4 << 20

    let directories: [String]
    let disk: any Disk
    /// Every copy, in the order they are written.
    let paths: [String]
    /// The generation of the last record every copy holds (or the JSON manifest's).
    private(set) var generation: UInt64 = 0
    /// True until a snapshot is written to every copy: copies missing, damaged or possibly different.
    private(set) var needsSnapshot = true
    private var copyBytes: [Int]
    private var snapshotBytes = 0
    private var deltaBytes = 0
    /// The entry logs the index on disk lists.
    var known: Set<UInt64> = []
    /// The small fields of the last record written, to skip a delta that would change nothing.
    private var lastHeader = IndexDelta.Header()
    /// JSON manifest files of earlier versions, removed after the first snapshot.
    private var legacyFiles: [String] = []

    struct Loaded {
        var manifest: Manifest
        /// What start-up had to work around (a damaged or missing copy, a torn record, an upgrade): logged as
        /// warnings.
        var notes: [String]
    }

    init(directories: [String], disk: any Disk) {
        precondition(!directories.isEmpty)
        self.directories = directories
        self.disk = disk
        paths = directories.map { $0 + "/" + Self.fileName } + (directories.count == 1 ? [directories[0] + "/" + Self.copyName] : [])
        copyBytes = Array(repeating: 0, count: paths.count)
    }

    /// Reads every copy and decides by the table above (only the copy used is decoded). Throws
    /// `StorageCorruption` when no copy can be used but some exist.
    mutating func load() throws -> Loaded {
        let legacy = ManifestStore(directories: directories, disk: disk)
        legacyFiles = [legacy.primaryPath, legacy.copyPath, legacy.legacyPath].filter { disk.exists($0) }
        // Every copy is read and checked whole (start-up is when damage to a copy is found), on as many threads
        // as there are copies: most of a million-ledger restart is reading and checking them.
        let scans = Mutex([IndexFile.ScannedCopy?](repeating: nil, count: paths.count))
        DispatchQueue.concurrentPerform(iterations: paths.count) { [paths, disk] i in
            let copy = IndexFile.scan(paths[i], disk: disk)
            scans.withLock { $0[i] = copy }
        }
        var copies = scans.withLock { $0.map { $0! } }
        while true {
            let scanned: [(Int, IndexFile.Scanned)] = copies.enumerated().compactMap { i, copy in
                if case .scanned(let s) = copy { return (i, s) }
                return nil
            }
            guard let newest = scanned.map(\.1.generation).max() else {
                guard copies.allSatisfy({ if case .absent = $0 { return true } else { return false } }) else {
                    throw StorageCorruption(path: paths[0], reason: "no intact copy of the ledger index ("
                                            + describeAll(copies) + "). Nothing was changed on disk. Restore one "
                                            + "copy from a backup, or treat this bookie's ledger disks as lost: move "
                                            + "its journal and ledger directories aside and start it afresh")
                }
                let old = try legacy.load()
                generation = old.manifest.generation
                needsSnapshot = true
                let upgrade = legacyFiles.isEmpty ? [] : ["read the JSON checkpoint manifest of an earlier version; "
                                                          + "the first checkpoint writes the ledger index and removes "
                                                          + legacyFiles.joined(separator: ", ")]
                return Loaded(manifest: old.manifest, notes: old.notes + upgrade)
            }
            // A crash cuts short the append of one copy at most (copies are written one after the other), and
            // the newest generation is then whole in another copy. When every copy at the newest generation
            // ends in a bad record, that record may have been whole once and acted upon (journals released,
            // files removed): starting from the generation before it could delete data, so start-up refuses.
            guard let (best, chosen) = scanned.first(where: { $0.1.generation == newest && $0.1.tornTail == nil }) else {
                throw StorageCorruption(path: paths[0], reason: "no copy of the ledger index ends cleanly at its "
                                        + "newest generation \(newest) (" + describeAll(copies) + "). A crash cuts "
                                        + "short one copy at most, so this is damage. Nothing was changed on disk. "
                                        + "Restore one copy from a backup, or treat this bookie's ledger disks as "
                                        + "lost: move its journal and ledger directories aside and start it afresh")
            }
            let decoded = IndexFile.decode(chosen, directories: directories.count)
            guard case .intact(let contents) = decoded else {
                // Its CRCs check but a body does not decode: damaged like any other, so another copy is tried.
                if case .damaged(let why) = decoded { copies[best] = .damaged(why) }
                continue
            }
            let started = "; started from \(paths[best]), generation \(newest), and the start-up checkpoint writes "
                + "every copy anew"
            var notes: [String] = []
            for (i, copy) in copies.enumerated() where i != best {
                if case .absent = copy, newest <= 1 { continue }
                if case .scanned(let other) = copy, other.generation == newest, other.tornTail == nil { continue }
                notes.append("\(paths[i]) \(Self.describe(copy))" + started)
            }
            generation = newest
            let clean = scanned.count == paths.count && scanned.allSatisfy {
                $0.1.generation == newest && $0.1.validBytes == $0.1.fileBytes
            }
            // JSON files of an earlier version beside an index: a crash came between the first snapshot and
            // their removal, which the next snapshot finishes.
            needsSnapshot = !clean || !legacyFiles.isEmpty
            if !needsSnapshot {
                copyBytes = scanned.map(\.1.fileBytes)
                snapshotBytes = chosen.snapshotBytes
                deltaBytes = chosen.deltaBytes
                known = Set(contents.manifest.entryLogs.map(\.id))
                lastHeader = IndexDelta.Header(journalMarks: contents.manifest.journalMarks,
                                               nextEntryLogID: contents.manifest.nextEntryLogID,
                                               removing: contents.manifest.removing,
                                               entryLogOrder: contents.manifest.entryLogs.map(\.id))
            }
            return Loaded(manifest: contents.manifest, notes: notes)
        }
    }

    private func describeAll(_ copies: [IndexFile.ScannedCopy]) -> String {
        zip(paths, copies).map { path, copy in "\(path) \(Self.describe(copy))" }.joined(separator: "; ")
    }

    private static func describe(_ copy: IndexFile.ScannedCopy) -> String {
        switch copy {
        case .absent: return "is missing"
        case .damaged(let why): return "is damaged: \(why)"
        case .scanned(let c): return "ends at generation \(c.generation)" + (c.tornTail.map { " (\($0))" } ?? "")
        }
    }

    /// Whether the next write must be a snapshot: a copy needs rewriting, or the deltas have grown enough.
    var wantsSnapshot: Bool { needsSnapshot || deltaBytes >= max(Self.deltaBytesMin, snapshotBytes / 2) }

    /// Appends `delta` to every copy as the next generation; a delta that changes nothing is not written.
    /// After a failure every copy is rewritten by the next write, a snapshot. Returns the bytes appended to
    /// each copy.
    @discardableResult
    mutating func append(_ delta: IndexDelta) throws -> Int {
        precondition(!needsSnapshot)
        if delta.changesNothing(after: lastHeader) { return 0 }
        let record = IndexFormat.record(generation: generation + 1, body: IndexFormat.body(delta))
        // Until every copy holds it: a failure leaves the copies possibly different, and its generation used
        // (so no later record bears the same number with other content).
        needsSnapshot = true
        generation += 1
        for (i, path) in paths.enumerated() {
            let file = try disk.open(path, [])
            defer { file.close() }
            try file.write(record, at: Int64(copyBytes[i]))
            try file.dataSync()
        }
        needsSnapshot = false
        for i in copyBytes.indices { copyBytes[i] += record.count }
        deltaBytes += record.count
        lastHeader = delta.header
        return record.count
    }

    /// Replaces every copy with a snapshot of `manifest` as the next generation; then removes the JSON
    /// manifest files of an earlier version, now superseded. Returns the bytes of each copy.
    @discardableResult
    mutating func writeSnapshot(_ manifest: Manifest) throws -> Int {
        let record = IndexFormat.record(generation: generation + 1, body: IndexFormat.snapshotBody(manifest))
        let file = IndexFormat.fileHeader() + record
        needsSnapshot = true
        generation += 1
        for path in paths { try disk.writeAtomically(path, file) }
        needsSnapshot = false
        copyBytes = Array(repeating: file.count, count: paths.count)
        snapshotBytes = record.count
        deltaBytes = 0
        lastHeader = IndexDelta.Header(journalMarks: manifest.journalMarks, nextEntryLogID: manifest.nextEntryLogID,
                                       removing: manifest.removing, entryLogOrder: manifest.entryLogs.map(\.id))
        if !legacyFiles.isEmpty {
            for path in legacyFiles { try disk.remove(path) }
            for dir in Set(legacyFiles.map { FileSystem.parent(of: $0) }).sorted() { try disk.syncDirectory(dir) }
            legacyFiles = []
        }
        return file.count
    }
}
