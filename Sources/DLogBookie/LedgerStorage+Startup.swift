import DLogIO

/// What start-up found in the ledger directories and did about it, for the bookie to log.
public struct StorageStartReport: Sendable, Equatable {
    /// Files proven to be garbage, now unlinked.
    public var removed: [String] = []
    /// Files that might hold data nothing lists: moved into `quarantine/` of their directory, kept.
    public var quarantined: [String] = []
    /// Damage worked around, or an upgrade, in the ledger index (see `IndexStore`).
    public var manifestNotes: [String] = []
    /// How long reading the ledger index took, and the generation it holds.
    public var indexLoadSeconds: Double = 0
    public var indexGeneration: UInt64 = 0
}

/// What start-up does with one entry-log file it finds. The rule: a file is deleted only with proof that it
/// is garbage; anything else that the manifest does not list is quarantined, never unlinked.
enum StartupFileAction: Equatable {
    case keep
    case remove(because: String)
    case quarantine(because: String)

    static func decide(_ name: EntryLogName, directory: Int, manifest: Manifest) -> StartupFileAction {
        if name.temporary { return .remove(because: "a temporary file is never listed: its write did not finish") }
        if manifest.entryLogs.contains(where: { $0.id == name.id && $0.directory == directory }) { return .keep }
        if manifest.removing.contains(RemovedEntryLog(id: name.id, directory: directory)) {
            return .remove(because: "the manifest lists it as dropped")
        }
        if name.id >= manifest.nextEntryLogID && !manifest.entryLogs.contains(where: { $0.id == name.id }) {
            // Written after this manifest (a checkpoint or compaction that died before persisting): journals
            // are released only once a manifest listing a file is on disk, so replay rebuilds what it holds.
            return .remove(because: "written after the manifest (id \(name.id) ≥ next id \(manifest.nextEntryLogID)); "
                           + "the journal still holds its entries")
        }
        return .quarantine(because: "the manifest neither lists it nor lists it as dropped")
    }
}

extension LedgerStorage {
    static let quarantineDirectory = "quarantine"

    /// Checks that every file the manifest lists exists, then removes proven garbage and quarantines the rest
    /// of what is unlisted. Directories are synced after each change, so a crash repeats the same decisions.
    static func sortEntryLogFiles(_ manifest: Manifest, directories: [String], disk: any Disk) throws -> StorageStartReport {
        for info in manifest.entryLogs {
            let path = directories[info.directory] + "/" + EntryLogWriter.fileName(info.id)
            guard disk.exists(path) else {
                throw StorageCorruption(path: path, reason: "the ledger index (generation \(manifest.generation)) "
                                        + "lists it with \(info.ledgers.count) live ledgers, but it is missing. Nothing "
                                        + "was changed on disk. Restore the file, or treat this bookie's ledger disks "
                                        + "as lost: move its journal and ledger directories aside and start it afresh")
            }
        }
        var report = StorageStartReport()
        for (index, dir) in directories.enumerated() {
            var changed = false
            for name in try disk.list(dir) {
                guard let parsed = EntryLogName.parse(name) else { continue }
                let path = dir + "/" + name
                switch StartupFileAction.decide(parsed, directory: index, manifest: manifest) {
                case .keep:
                    continue
                case .remove(let why):
                    try disk.remove(path)
                    report.removed.append("\(path) (\(why))")
                case .quarantine(let why):
                    let moved = try quarantine(path, name: name, in: dir, disk: disk)
                    report.quarantined.append("\(path) → \(moved) (\(why))")
                }
                changed = true
            }
            if changed { try disk.syncDirectory(dir) }
        }
        return report
    }

    /// Moves a file into `DIR/quarantine/` under a name not taken yet; returns where it went.
    private static func quarantine(_ path: String, name: String, in dir: String, disk: any Disk) throws -> String {
        let target = dir + "/" + quarantineDirectory
        try disk.makeDirectory(target)
        var destination = target + "/" + name
        var n = 1
        while disk.exists(destination) {
            n += 1
            precondition(n < 1_000_000, "quarantine of \(name) has no free name")
            destination = target + "/" + name + ".\(n)"
        }
        try disk.rename(path, destination)
        try disk.syncDirectory(target)
        return destination
    }
}
