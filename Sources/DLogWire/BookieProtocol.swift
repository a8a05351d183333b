import NIOCore

/// Operations a bookie serves.
public enum BookieOp: UInt8, Sendable, CaseIterable {
    case add = 1
    case read = 2
    case readLAC = 3
    case writeLAC = 4
    case deleteLedger = 5
    case getInfo = 6
    /// Which entries of a ledger the bookie stores, as ranges (for audits of replication).
    case listEntries = 7
    /// The master key a bookie holds for a ledger, so a replication worker can write copies the ledger's own
    /// clients can still fence and add to.
    case ledgerKey = 8
    /// The entries of a ledger in a range of ids, several per answer: how a replication worker reads the copies
    /// it moves without one request per entry.
    case readRange = 9
    /// Several entries in one request, each handled as an ADD: how a replication worker writes its copies.
    case addBatch = 10
}

/// Status of a response. Numbers are part of the protocol: never reuse one.
public enum BookieStatus: UInt16, Sendable, Error, CustomStringConvertible {
    case ok = 0
    case noLedger = 1
    case noEntry = 2
    case badRequest = 100
    case ioError = 101
    case unauthorized = 102
    case fenced = 104
    case readOnly = 105
    case tooManyRequests = 106
    case corruptEntry = 107
    case tooLarge = 108
    case shuttingDown = 109
    case permissionDenied = 110

    public var description: String {
        switch self {
        case .ok: return "ok"
        case .noLedger: return "no such ledger"
        case .noEntry: return "no such entry"
        case .badRequest: return "bad request"
        case .ioError: return "I/O error on the bookie"
        case .unauthorized: return "master key does not match the ledger's"
        case .fenced: return "ledger is fenced"
        case .readOnly: return "bookie is read-only"
        case .tooManyRequests: return "bookie is overloaded; retry later"
        case .corruptEntry: return "entry failed its checksum"
        case .tooLarge: return "entry too large"
        case .shuttingDown: return "bookie is shutting down"
        case .permissionDenied: return "permission denied"
        }
    }
}

public enum BookieFlags {
    /// ADD: a recovery add, accepted on a fenced ledger.
    public static let recoveryAdd: UInt16 = 0x1
    /// READ: fence the ledger before answering.
    public static let fence: UInt16 = 0x1
    /// READ_LAC: long poll; the body carries the previous LAC and a timeout.
    public static let longPoll: UInt16 = 0x1
    /// READ_LAC, with `longPoll`: the answer also carries the entry after the previous LAC when the new LAC covers
    /// it and the bookie holds it in memory, so a reader that keeps up needs no READ for it.
    public static let longPollEntry: UInt16 = 0x2
}

public enum BookieRequest: Sendable, Equatable {
    case add(masterKey: MasterKey, entry: [UInt8], recovery: Bool)
    case read(ledger: LedgerID, entry: EntryID, fenceWith: MasterKey?)
    case readLAC(ledger: LedgerID, longPoll: LongPoll?)
    case writeLAC(ledger: LedgerID, masterKey: MasterKey, lac: EntryID)
    case deleteLedger(ledger: LedgerID)
    case getInfo
    /// The stored entries of `ledger` with ids ≥ `from`, at most `rangesMax` ranges per answer.
    case listEntries(ledger: LedgerID, from: EntryID, rangesMax: UInt32)
    case ledgerKey(ledger: LedgerID)
    /// The entries of `ledger` with ids in `first...last` that the bookie holds intact, ascending, answered
    /// together up to about `maxBytes` (always at least one).
    case readRange(ledger: LedgerID, first: EntryID, last: EntryID, maxBytes: UInt32)
    /// `entries`, each added as by `.add` with the same key and flag; answered once all are durable.
    case addBatch(masterKey: MasterKey, entries: [[UInt8]], recovery: Bool)

    public struct LongPoll: Sendable, Equatable {
        public var previous: EntryID
        public var timeoutMilliseconds: UInt32
        /// Ask for the entry after `previous` with the answer (`BookieFlags.longPollEntry`).
        public var withEntry: Bool
        public init(previous: EntryID, timeoutMilliseconds: UInt32, withEntry: Bool = false) {
            self.previous = previous
            self.timeoutMilliseconds = timeoutMilliseconds
            self.withEntry = withEntry
        }
    }

    public var op: BookieOp {
        switch self {
        case .add: return .add
        case .read: return .read
        case .readLAC: return .readLAC
        case .writeLAC: return .writeLAC
        case .deleteLedger: return .deleteLedger
        case .getInfo: return .getInfo
        case .listEntries: return .listEntries
        case .ledgerKey: return .ledgerKey
        case .readRange: return .readRange
        case .addBatch: return .addBatch
        }
    }
}

public enum BookieResponse: Sendable, Equatable {
    case added(ledger: LedgerID, entry: EntryID)
    case entry([UInt8])
    case lac(lac: EntryID, lastEntry: EntryID)
    /// READ_LAC asked with `longPollEntry`: the LAC, and the stored entry (header and payload, as READ answers)
    /// that follows the poll's previous LAC.
    case lacAndEntry(lac: EntryID, lastEntry: EntryID, entry: [UInt8])
    case done
    case info(json: String)
    /// LIST_ENTRIES: ascending, disjoint, non-adjacent ranges of stored entry ids; `next` is where to ask again
    /// when `rangesMax` cut the list short (nil: the list is complete).
    case entries(ranges: [EntryRange], next: EntryID?)
    /// LEDGER_KEY: the ledger's master key as this bookie stores it.
    case masterKey(MasterKey)
    /// READ_RANGE: the entries, ascending; `next` is where to ask again when `maxBytes` cut the answer short
    /// (nil: the whole range was looked at).
    case entryBatch(entries: [[UInt8]], next: EntryID?)
    /// ADD_BATCH: all `count` entries are durable.
    case addedBatch(count: UInt32)
    case failed(BookieStatus, message: String)
}

/// Consecutive entry ids `first...last`.
public struct EntryRange: Sendable, Equatable, CustomStringConvertible {
    public var first: EntryID
    public var last: EntryID
    public init(_ first: EntryID, _ last: EntryID) {
        precondition(first <= last, "an entry range runs forwards")
        self.first = first
        self.last = last
    }
    public var count: Int64 { last.rawValue - first.rawValue + 1 }
    public var description: String { first == last ? "\(first.rawValue)" : "\(first.rawValue)-\(last.rawValue)" }

    /// Ascending ids folded into ranges (adjacent ids join one range); duplicates are ignored.
    public static func ranges(of sortedIDs: some Sequence<Int64>) -> [EntryRange] {
        var out: [EntryRange] = []
        for id in sortedIDs {
            if let last = out.last?.last.rawValue {
                precondition(id >= last, "ids must come in ascending order")
                if id == last { continue }
                if id == last + 1 { out[out.count - 1].last = EntryID(id); continue }
            }
            out.append(EntryRange(EntryID(id), EntryID(id)))
        }
        return out
    }
}

public struct ProtocolError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
