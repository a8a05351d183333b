import DLogWire

/// What a bookie remembers about one ledger besides its entries. Persisted in the checkpoint manifest and
/// rebuilt from journal records after it (all but `heardLAC`).
///
/// A LAC is its writer's word that the entries up to it are durable on an ack quorum: true whether or not this
/// bookie keeps the request that brought it. So tailing readers hear a LAC as soon as the request is taken,
/// not after this bookie's sync.
public struct LedgerState: Codable, Sendable, Equatable {
    public var masterKey: [UInt8]
    public var fenced = false
    /// Highest LAC sent by WRITE_LAC. Kept in memory and persisted by checkpoints, never journaled: after a
    /// crash the bookie may report an older LAC, and the next add or WRITE_LAC brings it up again.
    public var explicitLAC: Int64 = -1
    /// Highest LAC piggybacked on a stored (durable) entry.
    public var piggybackLAC: Int64 = -1
    public var lastEntry: Int64 = -1
    /// Highest LAC piggybacked on an add taken but not durable here yet. Not persisted: the add's record,
    /// once durable, raises `piggybackLAC` to it.
    public var heardLAC: Int64 = -1

    public init(masterKey: [UInt8]) { self.masterKey = masterKey }

    /// What READ_LAC answers: the best LAC this bookie knows.
    public var lac: Int64 { max(explicitLAC, piggybackLAC, heardLAC) }

    /// LACs only grow: a late or repeated word of an older one changes nothing.
    mutating func heard(piggybacked lac: Int64) { piggybackLAC = max(piggybackLAC, lac) }
    mutating func heard(explicit lac: Int64) { explicitLAC = max(explicitLAC, lac) }
    mutating func heard(early lac: Int64) { heardLAC = max(heardLAC, lac) }

    private enum CodingKeys: String, CodingKey {
        case masterKey, fenced, explicitLAC, piggybackLAC, lastEntry
    }
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
