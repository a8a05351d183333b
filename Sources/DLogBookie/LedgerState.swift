import DLogWire

/// What a bookie remembers about one ledger besides its entries. Persisted in the ledger index and
/// rebuilt from journal records after it (all but `heardLAC`).
///
/// A LAC is its writer's word that the entries up to it are durable on an ack quorum: true whether or not this
/// bookie keeps the request that brought it. So tailing readers hear a LAC as soon as the request is taken,
/// not after this bookie's sync.
public struct LedgerState: Codable, Sendable, Equatable {
    /// The 20-byte master key, kept inline: an array per ledger would cost a heap block each, about 64 of
    /// the 200 MB a million idle ledgers may take (issue: RSS with 1M ledgers).
    private var key: InlineKey
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

    /// `masterKey` must be `MasterKey.byteCount` bytes.
    public init(masterKey: [UInt8]) {
        guard let key = InlineKey(masterKey) else { preconditionFailure("a master key is \(MasterKey.byteCount) bytes") }
        self.key = key
    }

    public var masterKey: [UInt8] { key.bytes }

    /// A state whose key is given as the big-endian words of its 20 bytes (the ledger index reads it so,
    /// without an array per ledger).
    init(keyWords high: UInt64, _ middle: UInt64, _ low: UInt32) { key = InlineKey(high: high, middle: middle, low: low) }

    /// Appends the key's 20 bytes.
    func appendKey(to out: inout [UInt8]) {
        out.appendBigEndian(key.high)
        out.appendBigEndian(key.middle)
        out.appendBigEndian(key.low)
    }

    /// Whether `masterKey` is this ledger's key: three words compared.
    func hasKey(_ masterKey: MasterKey) -> Bool {
        key == InlineKey(high: masterKey.high, middle: masterKey.middle, low: masterKey.low)
    }

    /// A new ledger's state with `masterKey`, without building an array.
    init(key masterKey: MasterKey) {
        key = InlineKey(high: masterKey.high, middle: masterKey.middle, low: masterKey.low)
    }

    /// What READ_LAC answers: the best LAC this bookie knows.
    public var lac: Int64 { max(explicitLAC, piggybackLAC, heardLAC) }

    /// LACs only grow: a late or repeated word of an older one changes nothing.
    mutating func heard(piggybacked lac: Int64) { piggybackLAC = max(piggybackLAC, lac) }
    mutating func heard(explicit lac: Int64) { explicitLAC = max(explicitLAC, lac) }
    mutating func heard(early lac: Int64) { heardLAC = max(heardLAC, lac) }

    /// The persisted fields only: `heardLAC` is not part of what a checkpoint stores.
    func samePersisted(as other: LedgerState) -> Bool {
        key == other.key && fenced == other.fenced && explicitLAC == other.explicitLAC
            && piggybackLAC == other.piggybackLAC && lastEntry == other.lastEntry
    }

    private enum CodingKeys: String, CodingKey {
        case masterKey, fenced, explicitLAC, piggybackLAC, lastEntry
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let bytes = try c.decode([UInt8].self, forKey: .masterKey)
        guard let key = InlineKey(bytes) else {
            throw DecodingError.dataCorruptedError(forKey: .masterKey, in: c, debugDescription: "a master key is "
                                                   + "\(MasterKey.byteCount) bytes, not \(bytes.count)")
        }
        self.key = key
        fenced = try c.decode(Bool.self, forKey: .fenced)
        explicitLAC = try c.decode(Int64.self, forKey: .explicitLAC)
        piggybackLAC = try c.decode(Int64.self, forKey: .piggybackLAC)
        lastEntry = try c.decode(Int64.self, forKey: .lastEntry)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(masterKey, forKey: .masterKey)
        try c.encode(fenced, forKey: .fenced)
        try c.encode(explicitLAC, forKey: .explicitLAC)
        try c.encode(piggybackLAC, forKey: .piggybackLAC)
        try c.encode(lastEntry, forKey: .lastEntry)
    }
}

/// 20 bytes in three words, in the key's byte order.
private struct InlineKey: Equatable, Sendable {
    var high: UInt64
    var middle: UInt64
    var low: UInt32

    init(high: UInt64, middle: UInt64, low: UInt32) { (self.high, self.middle, self.low) = (high, middle, low) }

    init?(_ bytes: [UInt8]) {
        guard bytes.count == MasterKey.byteCount else { return nil }
        (high, middle, low) = bytes.withUnsafeBytes { raw in
            (raw.loadBigEndian(UInt64.self, at: 0), raw.loadBigEndian(UInt64.self, at: 8), raw.loadBigEndian(UInt32.self, at: 16))
        }
    }

    var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(MasterKey.byteCount)
        out.appendBigEndian(high)
        out.appendBigEndian(middle)
        out.appendBigEndian(low)
        return out
    }
}

/// The checkpoint state: where replay starts in each journal, which entry logs exist and what they hold, and
/// every ledger's state. `IndexStore` keeps it on disk as a snapshot followed by deltas (only what changed);
/// its JSON form is only read, from the `checkpoint.manifest` files earlier dlogd versions wrote (`ManifestStore`).
struct Manifest: Codable, Equatable {
    /// The JSON body's format; the sealed file's header carries it too. Version 1 was unsealed `checkpoint.json`.
    static let currentVersion = 2
    var version = Manifest.currentVersion
    /// Counts persisted checkpoints: of two intact copies the higher generation is the newer.
    var generation: UInt64 = 0
    var journalMarks: [JournalPosition?] = []
    var nextEntryLogID: UInt64 = 1
    var entryLogs: [EntryLogInfo] = []
    var ledgers = LedgerTable()
    /// Entry logs dropped from `entryLogs` whose files may not be unlinked yet: proof, at the next start,
    /// that such a file is garbage. A file that is neither listed here nor in `entryLogs` is quarantined.
    var removing: [RemovedEntryLog] = []
    /// Ledgers removed from the entry logs' lists (deleted) since the last `IndexDelta` was taken.
    var unlisted: Set<UInt64> = []

    init() {}

    private enum CodingKeys: String, CodingKey {
        case version, generation, journalMarks, nextEntryLogID, entryLogs, ledgers, removing
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        // Version 1 had no generation and no removal list.
        generation = try c.decodeIfPresent(UInt64.self, forKey: .generation) ?? 0
        journalMarks = try c.decode([JournalPosition?].self, forKey: .journalMarks)
        nextEntryLogID = try c.decode(UInt64.self, forKey: .nextEntryLogID)
        entryLogs = try c.decode([EntryLogInfo].self, forKey: .entryLogs)
        ledgers = try c.decode(LedgerTable.self, forKey: .ledgers)
        removing = try c.decodeIfPresent([RemovedEntryLog].self, forKey: .removing) ?? []
    }

    /// Equal content; what changed since the last delta is bookkeeping.
    static func == (a: Self, b: Self) -> Bool {
        a.version == b.version && a.generation == b.generation && a.journalMarks == b.journalMarks
            && a.nextEntryLogID == b.nextEntryLogID && a.entryLogs == b.entryLogs && a.ledgers == b.ledgers
            && a.removing == b.removing
    }

    /// Removes a deleted ledger from every entry log's list, remembered for the next delta.
    mutating func unlist(_ ledger: UInt64) {
        for i in entryLogs.indices where entryLogs[i].ledgers[ledger] != nil { entryLogs[i].ledgers[ledger] = nil }
        unlisted.insert(ledger)
    }
}

/// An entry-log file on its way out: which file, in which ledger directory.
struct RemovedEntryLog: Codable, Equatable, Sendable {
    var id: UInt64
    var directory: Int
}
