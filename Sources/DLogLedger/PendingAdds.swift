import DequeModule
import DLogWire

/// A writer's adds that are sent but not yet confirmed, and the rule that confirms them (DESIGN invariant 1):
/// an entry is confirmed once `ackQuorum` bookies of its write set acknowledged it *and* every earlier entry
/// is confirmed. The last confirmed entry is the LAC. Pure state: the I/O layer feeds acknowledgements in and
/// completes what comes out.
public struct PendingAdds: Sendable {
    struct Entry: Sendable {
        var id: EntryID
        /// Ensemble positions that acknowledged this entry.
        var acknowledged: Set<Int> = []
    }

    public let quorums: Quorums
    /// The last confirmed entry; `.none` before any.
    public private(set) var lastAddConfirmed: EntryID
    /// Unconfirmed entries, oldest first, with consecutive ids after `lastAddConfirmed`.
    private var entries = Deque<Entry>()
    /// While set (during an ensemble change), acknowledgements are recorded but nothing is confirmed, so the
    /// first unconfirmed entry (where the new fragment starts) stays put; `confirmReady` releases them.
    public var holding = false

    public init(quorums: Quorums, lastAddConfirmed: EntryID = .none) {
        self.quorums = quorums
        self.lastAddConfirmed = lastAddConfirmed
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }
    /// The id the next add must take.
    public var nextEntry: EntryID { EntryID((entries.last?.id ?? lastAddConfirmed).rawValue + 1) }
    /// The oldest unconfirmed entry, where an ensemble change starts its new fragment.
    public var firstUnconfirmed: EntryID? { entries.first?.id }

    /// Starts tracking the next entry; returns its id and the ensemble positions to send it to.
    public mutating func append() -> (entry: EntryID, positions: [Int]) {
        let id = nextEntry
        entries.append(Entry(id: id))
        return (id, quorums.writeSet(of: id))
    }

    /// Records that the bookie at `position` acknowledged `entry`; returns the entries this confirms, in order
    /// (empty when the entry is not confirmed yet, or waits for an earlier one). An acknowledgement from a
    /// position outside the entry's write set, or for an entry no longer pending, changes nothing.
    public mutating func acknowledge(_ entry: EntryID, from position: Int) -> [EntryID] {
        guard let first = entries.first?.id, entry >= first else { return [] }
        let index = Int(entry.rawValue - first.rawValue)
        guard index < entries.count, quorums.writeSet(of: entry).contains(position) else { return [] }
        entries[index].acknowledged.insert(position)
        return confirmReady()
    }

    /// Confirms, in order, the entries at the front that have an ack quorum (none while `holding`).
    public mutating func confirmReady() -> [EntryID] {
        guard !holding else { return [] }
        var confirmed: [EntryID] = []
        while let head = entries.first, head.acknowledged.count >= quorums.ackQuorum {
            confirmed.append(head.id)
            lastAddConfirmed = head.id
            entries.removeFirst()
        }
        return confirmed
    }

    /// The bookie at `position` was replaced: its acknowledgements of unconfirmed entries no longer count (the
    /// new fragment names the replacement for them). Returns the unconfirmed entries the replacement must be sent.
    public mutating func replace(position: Int) -> [EntryID] {
        var resend: [EntryID] = []
        for index in entries.indices where quorums.writeSet(of: entries[index].id).contains(position) {
            entries[index].acknowledged.remove(position)
            resend.append(entries[index].id)
        }
        return resend
    }

    /// Every unconfirmed entry, oldest first (to fail them when the ledger cannot be written any more).
    public mutating func removeAll() -> [EntryID] {
        defer { entries.removeAll() }
        return entries.map(\.id)
    }
}
