import DLogWire

/// Which bookies of an ensemble store an entry, and how many of them must acknowledge it.
///
/// Entry `i` goes to the `writeQuorum` consecutive ensemble positions starting at `i mod ensembleSize`
/// (wrapping). With E = Qw every entry is on every bookie; with E > Qw entries are striped, so each bookie
/// holds Qw/E of the ledger. There are only E distinct write sets.
public struct Quorums: Hashable, Sendable, CustomStringConvertible {
    public let ensembleSize: Int
    public let writeQuorum: Int
    public let ackQuorum: Int

    /// Checks E ≥ Qw ≥ Qa ≥ 1; nil when they do not hold.
    public init?(ensembleSize: Int, writeQuorum: Int, ackQuorum: Int) {
        guard ensembleSize >= writeQuorum, writeQuorum >= ackQuorum, ackQuorum >= 1, ensembleSize <= 64 else { return nil }
        self.ensembleSize = ensembleSize
        self.writeQuorum = writeQuorum
        self.ackQuorum = ackQuorum
    }

    public init?(_ metadata: LedgerMetadata) {
        self.init(ensembleSize: metadata.ensembleSize, writeQuorum: metadata.writeQuorum, ackQuorum: metadata.ackQuorum)
    }

    public var description: String { "E=\(ensembleSize) Qw=\(writeQuorum) Qa=\(ackQuorum)" }

    /// Ensemble positions that store `entry`, in write order.
    public func writeSet(of entry: EntryID) -> [Int] {
        precondition(entry.rawValue >= 0, "entry ids of stored entries are not negative")
        let first = Int(entry.rawValue % Int64(ensembleSize))
        return (0..<writeQuorum).map { (first + $0) % ensembleSize }
    }

    /// How many bookies of one write set must answer before the ones that did not cannot form an ack quorum:
    /// Qw − Qa + 1. Fencing waits for this many per write set; recovery calls an entry missing after this many
    /// "no such entry" answers from its write set.
    public var coverage: Int { writeQuorum - ackQuorum + 1 }

    /// The distinct write sets (for fencing: every one of them must be covered).
    public var allWriteSets: [[Int]] {
        (0..<ensembleSize).map { writeSet(of: EntryID(Int64($0))) }
    }
}
