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
        var ahead = ReadAhead()
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
                    guard case .entry(let entry) = read(ledger, EntryID(id), through: last, budget: max(1, budget - bytes),
                                                        ahead: &ahead) else { continue }
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

    /// Entries read from one entry-log file past the one asked for, for the next steps of a READ_RANGE.
    struct ReadAhead {
        var file: UInt64?
        var entries: [Int64: LedgerStorage.StoredEntry] = [:]
    }

    /// One entry of a READ_RANGE, answered as `readEntryBlocking` answers it. An entry in an entry log comes with
    /// those behind it in the same file (up to `budget` bytes), kept in `ahead`; one of those is used only while
    /// that file is still the newest to hold it, the file a READ would read it from.
    private func read(_ ledger: LedgerID, _ entry: EntryID, through last: EntryID, budget: Int,
                      ahead: inout ReadAhead) -> BookieResponse {
        guard case .onDisk(let files) = storage.readCached(ledger, entry).1, let newest = files.first else {
            return readEntryBlocking(ledger: ledger, entry: entry)
        }
        if ahead.file != newest || ahead.entries[entry.rawValue] == nil {
            // A file that cannot be read this way (damaged, or gone since the lookup) is read as a READ reads it,
            // which reports the damage.
            guard let run = try? storage.readRunFromDisk(ledger, entry, through: last, file: newest, maxBytes: budget),
                  !run.isEmpty else {
                return readEntryBlocking(ledger: ledger, entry: entry)
            }
            ahead = ReadAhead(file: newest, entries: Dictionary(run.map { ($0.entry.rawValue, $0.stored) },
                                                                uniquingKeysWith: { a, _ in a }))
        }
        guard let stored = ahead.entries.removeValue(forKey: entry.rawValue) else {
            return readEntryBlocking(ledger: ledger, entry: entry)
        }
        return checked(stored.bytes, ledger, entry, at: "\(stored.path) offset \(stored.offset)")
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
