import DLogIO
import DLogWire

/// A stopped bookie's checkpoint state, read only from its ledger directories' index (`ledgers.index`, or the
/// JSON manifest of earlier versions): the journal marks replay starts from, the entry logs and the ledgers
/// (`dlogctl inspect manifest`), and one ledger's entries on this bookie with their CRCs checked
/// (`dlogctl inspect ledger`).
public enum IndexInspection {
    public struct EntryLog: Codable, Sendable, Equatable {
        public var id: UInt64
        public var path: String
        public var totalBytes: Int
        public var liveBytes: Int
        public var ledgers: Int
    }

    public struct Ledger: Codable, Sendable, Equatable {
        public var ledger: UInt64
        public var fenced: Bool
        /// The highest entry stored here (-1: none).
        public var lastEntry: Int64
        /// The last-add-confirmed this bookie knows (from WRITE_LAC or piggybacked on entries; -1: none).
        public var lastAddConfirmed: Int64
    }

    public struct Report: Codable, Sendable, Equatable {
        public var directories: [String]
        public var generation: UInt64
        /// Per journal directory, where replay starts ("none": from the journal's first file).
        public var journalMarks: [String]
        public var nextEntryLogID: UInt64
        public var entryLogs: [EntryLog]
        public var ledgerCount: Int
        public var ledgers: [Ledger]
        /// What loading had to work around (a damaged or missing copy): the bookie logs the same at start.
        public var notes: [String]
    }

    /// Loads the index of the ledger directories `directories` (all of a bookie's, in its config's order: an
    /// entry log's directory is an index into them).
    public static func inspect(directories: [String], disk: any Disk = PosixDisk()) throws -> Report {
        let (manifest, notes) = try load(directories, disk: disk)
        var ledgers: [Ledger] = []
        manifest.ledgers.forEach { id, state in
            ledgers.append(Ledger(ledger: id, fenced: state.fenced, lastEntry: state.lastEntry,
                                  lastAddConfirmed: max(state.explicitLAC, state.piggybackLAC)))
        }
        return Report(directories: directories, generation: manifest.generation,
                      journalMarks: manifest.journalMarks.map { $0.map { "\($0)" } ?? "none" },
                      nextEntryLogID: manifest.nextEntryLogID,
                      entryLogs: manifest.entryLogs.map { info in
                          EntryLog(id: info.id, path: path(of: info, in: directories), totalBytes: info.totalBytes,
                                   liveBytes: info.liveBytes, ledgers: info.ledgers.count)
                      },
                      ledgerCount: ledgers.count, ledgers: ledgers, notes: notes)
    }

    public struct LedgerFile: Codable, Sendable, Equatable {
        public var path: String
        public var first: Int64
        public var last: Int64
        public var entries: Int
        public var damaged: [EntryLogInspection.Damaged]
    }

    public struct LedgerReport: Codable, Sendable, Equatable {
        public var ledger: UInt64
        /// nil: the index does not know the ledger (never stored here, deleted, or only in the journal since the
        /// last checkpoint).
        public var state: Ledger?
        public var files: [LedgerFile]
        public var entries: Int
        public var damaged: Int
    }

    /// Ledger `id`'s entries in the entry logs the index lists, each read and checked. Entries added since the
    /// last checkpoint are only in the journal (`JournalInspection`).
    public static func ledger(_ id: UInt64, directories: [String], disk: any Disk = PosixDisk()) throws -> LedgerReport {
        let (manifest, _) = try load(directories, disk: disk)
        let state = manifest.ledgers[id].map {
            Ledger(ledger: id, fenced: $0.fenced, lastEntry: $0.lastEntry, lastAddConfirmed: max($0.explicitLAC, $0.piggybackLAC))
        }
        var files: [LedgerFile] = []
        for info in manifest.entryLogs where info.ledgers[id] != nil {
            let path = path(of: info, in: directories)
            let reader = try EntryLogReader(path: path, disk: disk)
            var file = LedgerFile(path: path, first: .max, last: .min, entries: 0, damaged: [])
            for (ledger, entry, offset, length) in try reader.rows() where ledger == id {
                file.entries += 1
                file.first = min(file.first, entry)
                file.last = max(file.last, entry)
                if let bad = EntryLogInspection.check(reader, ledger: ledger, entry: entry, offset: offset, length: length) {
                    file.damaged.append(bad)
                }
            }
            if file.entries > 0 { files.append(file) }
        }
        return LedgerReport(ledger: id, state: state, files: files, entries: files.reduce(0) { $0 + $1.entries },
                            damaged: files.reduce(0) { $0 + $1.damaged.count })
    }

    private static func path(of info: EntryLogInfo, in directories: [String]) -> String {
        let directory = info.directory < directories.count ? directories[info.directory] : directories[0]
        return directory + "/" + EntryLogWriter.fileName(info.id)
    }

    private static func load(_ directories: [String], disk: any Disk) throws -> (Manifest, [String]) {
        guard !directories.isEmpty else { throw JournalInspection.Refusal(description: "no ledger directory given") }
        for directory in directories where !disk.exists(directory) {
            throw JournalInspection.Refusal(description: "\(directory) does not exist")
        }
        let names = [IndexStore.fileName, IndexStore.copyName, ManifestStore.fileName, ManifestStore.copyName, ManifestStore.legacyName]
        guard directories.contains(where: { directory in names.contains { disk.exists(directory + "/" + $0) } }) else {
            throw JournalInspection.Refusal(description: "no ledger index in \(directories.joined(separator: ", ")) "
                                            + "(\(IndexStore.fileName)): is it a bookie's ledger directory, and has it checkpointed?")
        }
        var store = IndexStore(directories: directories, disk: disk)
        let loaded = try store.load()
        return (loaded.manifest, loaded.notes)
    }
}
