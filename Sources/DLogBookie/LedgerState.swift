import DLogWire

/// What a bookie remembers about one ledger besides its entries. Persisted in the checkpoint manifest and
/// rebuilt from journal records after it.
public struct LedgerState: Codable, Sendable, Equatable {
    public var masterKey: [UInt8]
    public var fenced = false
    public var explicitLAC: Int64 = -1
    /// Highest LAC piggybacked on an entry.
    public var piggybackLAC: Int64 = -1
    public var lastEntry: Int64 = -1

    public init(masterKey: [UInt8]) { self.masterKey = masterKey }

    /// What READ_LAC answers: the best LAC this bookie knows.
    public var lac: Int64 { max(explicitLAC, piggybackLAC) }
}

/// The checkpoint manifest: where replay starts in each journal, which entry logs exist and what they
/// hold, and every ledger's state. Its size grows with the number of ledgers and files, not with the bytes
/// stored, so reading it keeps restarts fast. `ManifestStore` seals it and keeps two copies.
struct Manifest: Codable, Equatable {
    /// The body's format; the sealed file's header carries it too. Version 1 was unsealed `checkpoint.json`.
    static let currentVersion = 2
    var version = Manifest.currentVersion
    /// Counts persisted manifests: of two intact copies the higher generation is the newer.
    var generation: UInt64 = 0
    var journalMarks: [JournalPosition?] = []
    var nextEntryLogID: UInt64 = 1
    var entryLogs: [EntryLogInfo] = []
    var ledgers: [UInt64: LedgerState] = [:]
    /// Entry logs dropped from `entryLogs` whose files may not be unlinked yet: proof, at the next start,
    /// that such a file is garbage. A file that is neither listed here nor in `entryLogs` is quarantined.
    var removing: [RemovedEntryLog] = []

    init() {}

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        // Version 1 had no generation and no removal list.
        generation = try c.decodeIfPresent(UInt64.self, forKey: .generation) ?? 0
        journalMarks = try c.decode([JournalPosition?].self, forKey: .journalMarks)
        nextEntryLogID = try c.decode(UInt64.self, forKey: .nextEntryLogID)
        entryLogs = try c.decode([EntryLogInfo].self, forKey: .entryLogs)
        ledgers = try c.decode([UInt64: LedgerState].self, forKey: .ledgers)
        removing = try c.decodeIfPresent([RemovedEntryLog].self, forKey: .removing) ?? []
    }
}

/// An entry-log file on its way out: which file, in which ledger directory.
struct RemovedEntryLog: Codable, Equatable, Sendable {
    var id: UInt64
    var directory: Int
}
