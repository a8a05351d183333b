import DLogWire
import Synchronization

/// The two batched requests a replication worker copies with (docs/protocol.md, READ_RANGE and ADD_BATCH): one
/// request per megabyte instead of two per entry, since per-request work, not bytes, is what a copy spends most.
extension Bookie {
    /// READ_RANGE answers at most this many bytes whatever is asked (one larger entry still goes alone).
    public static let readRangeBytesMax = 4 << 20

    /// READ_RANGE: the entries of `ledger` in `first...last` this bookie holds intact, ascending, up to
    /// `maxBytes` (at least one). An entry it lacks is left out, and so is one it holds damaged (logged as a READ
    /// of it is): the caller asks another replica for those. Blocking: run it off the event loop.
    public func readRange(ledger: LedgerID, first: EntryID, last: EntryID, maxBytes: UInt32) -> BookieResponse {
        let budget = min(Int(maxBytes), Self.readRangeBytesMax)
        var entries: [[UInt8]] = []
        var bytes = 0
        var from = first
        defer { reportRepairs() }
        while from <= last {
            let listed: (ranges: [EntryRange], next: EntryID?)?
            do {
                listed = try storage.storedEntries(ledger, from: from, rangesMax: 256)
            } catch {
                return .failed(.ioError, message: "listing the entries of \(ledger): \(error)")
            }
            guard let (ranges, next) = listed else {
                return .failed(.noLedger, message: "\(ledger) is not on this bookie")
            }
            for range in ranges where range.last >= from {
                guard range.first <= last else { return .entryBatch(entries: entries, next: nil) }
                for id in max(range.first.rawValue, from.rawValue)...min(range.last.rawValue, last.rawValue) {
                    // Damaged or gone since the listing: left out, as the caller reads it elsewhere.
                    guard case .entry(let entry) = readEntryBlocking(ledger: ledger, entry: EntryID(id)) else { continue }
                    if !entries.isEmpty && bytes + entry.count > budget {
                        return .entryBatch(entries: entries, next: EntryID(id))
                    }
                    bytes += entry.count
                    entries.append(entry)
                }
            }
            guard let next else { break }
            from = next
        }
        return .entryBatch(entries: entries, next: nil)
    }

    /// ADD_BATCH: each entry is added as `add` would (its own checks, its own journal record), and the answer
    /// comes once every one is durable: ADDED_BATCH, or the first refusal, naming the entry, when any is refused
    /// (the others may be stored; adds are idempotent, so the caller sends the batch again or gives up).
    public func addBatch(masterKey: MasterKey, entries: [[UInt8]], recovery: Bool, reply: @escaping Reply) {
        precondition(!entries.isEmpty, "the decoder refuses an empty ADD_BATCH")
        let tally = BatchTally(count: entries.count, reply: reply)
        for (index, entry) in entries.enumerated() {
            add(masterKey: masterKey, entry: entry, recovery: recovery) { tally.answered(index, $0) }
        }
    }
}

/// Gathers the answers of one ADD_BATCH's adds into its one reply.
private final class BatchTally: Sendable {
    private struct State {
        var left: Int
        var refusal: BookieResponse?
    }
    private let state: Mutex<State>
    private let count: Int
    private let reply: Bookie.Reply

    init(count: Int, reply: @escaping Bookie.Reply) {
        self.count = count
        self.reply = reply
        state = Mutex(State(left: count, refusal: nil))
    }

    func answered(_ index: Int, _ response: BookieResponse) {
        let final: BookieResponse? = state.withLock { s in
            if case .failed(let status, let message) = response, s.refusal == nil {
                s.refusal = .failed(status, message: "entry \(index) of the batch: \(message)")
            }
            s.left -= 1
            guard s.left == 0 else { return nil }
            return s.refusal ?? .addedBatch(count: UInt32(count))
        }
        if let final { reply(final) }
    }
}
