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

/// The checkpoint manifest, written atomically to the first ledger directory: where replay starts in each
/// journal, which entry logs exist and what they hold, and every ledger's state. Its size grows with the
/// number of ledgers and files, not with the bytes stored, so reading it keeps restarts fast.
struct Manifest: Codable, Equatable {
    static let fileName = "checkpoint.json"
    var version = 1
    var journalMarks: [JournalPosition?] = []
    var nextEntryLogID: UInt64 = 1
    var entryLogs: [EntryLogInfo] = []
    var ledgers: [UInt64: LedgerState] = [:]
}
