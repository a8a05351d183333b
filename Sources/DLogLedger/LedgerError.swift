import DLogWire

/// What a ledger client reports, each naming the ledger, entry or bookie involved.
public enum LedgerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Another client fenced the ledger (it is being recovered): this writer may add nothing more.
    case fenced(LedgerID)
    /// A bookie of the ensemble failed a write (replacing it comes with ensemble changes).
    case bookieFailed(LedgerID, BookieID, String)
    case noSuchLedger(LedgerID)
    case wrongPassword(LedgerID)
    /// The writer was closed, or failed earlier and takes no more adds.
    case writerClosed(LedgerID, String)
    /// A read past the last add confirmed: readers never see past it.
    case beyondLastAddConfirmed(LedgerID, entry: EntryID, lac: EntryID)
    /// A range whose first entry is negative or after its last.
    case invalidRange(LedgerID, first: EntryID, last: EntryID)
    /// No replica returned the entry intact.
    case unreadable(LedgerID, EntryID, [String])
    /// Recovery could not finish (fencing impossible, an entry undecidable); the ledger stays in recovery and
    /// a later recovery starts over.
    case recoveryFailed(LedgerID, String)
    /// Another client changed the ledger first (another recoverer closed it differently, metadata moved under
    /// a delete): nothing was changed by this call.
    case conflict(LedgerID, String)
    /// No bookie of the last ensemble reported a last add confirmed.
    case lacUnavailable(LedgerID, [String])
    /// The ledger's metadata cannot be used (impossible quorums).
    case badMetadata(LedgerID, String)
    /// No live bookie of the ledger gave its master key (LEDGER_KEY), so nothing can be copied for it now.
    case keyUnavailable(LedgerID, [String])
    case placement(String)
    case unreachable(BookieID, String)
    /// Back-pressure: the writer already has its limit of adds in flight; this add was not taken.
    case tooManyOutstandingAdds(LedgerID, limit: Int)

    /// The ledger the error is about, if any (for logs: the journal's LEDGER_ID field).
    public var ledger: LedgerID? {
        switch self {
        case .fenced(let l), .bookieFailed(let l, _, _), .noSuchLedger(let l), .wrongPassword(let l), .writerClosed(let l, _),
             .beyondLastAddConfirmed(let l, _, _), .invalidRange(let l, _, _), .unreadable(let l, _, _),
             .recoveryFailed(let l, _), .conflict(let l, _), .lacUnavailable(let l, _), .badMetadata(let l, _),
             .keyUnavailable(let l, _), .tooManyOutstandingAdds(let l, _):
            return l
        case .placement, .unreachable:
            return nil
        }
    }

    public var description: String {
        switch self {
        case .fenced(let ledger):
            return "\(ledger) is fenced: another client is recovering it; this writer's pending and later adds fail"
        case .bookieFailed(let ledger, let bookie, let why):
            return "\(ledger): bookie \(bookie) failed a write: \(why)"
        case .noSuchLedger(let ledger):
            return "\(ledger) does not exist"
        case .wrongPassword(let ledger):
            return "wrong password for \(ledger)"
        case .writerClosed(let ledger, let why):
            return "the writer of \(ledger) takes no more adds: \(why)"
        case .beyondLastAddConfirmed(let ledger, let entry, let lac):
            return "\(ledger): \(entry) is past the last add confirmed (\(lac))"
        case .invalidRange(let ledger, let first, let last):
            return "\(ledger): \(first)...\(last) is not a range of entries (the first must be 0 or more and not after the last)"
        case .unreadable(let ledger, let entry, let reasons):
            return "\(ledger): no replica returned \(entry) intact (\(reasons.joined(separator: "; ")))"
        case .recoveryFailed(let ledger, let why):
            return "recovery of \(ledger) failed: \(why); it stays in recovery, and recovering it again starts over"
        case .conflict(let ledger, let why):
            return "\(ledger): \(why)"
        case .lacUnavailable(let ledger, let reasons):
            return "\(ledger): no bookie of its last ensemble reported a last add confirmed (\(reasons.joined(separator: "; ")))"
        case .badMetadata(let ledger, let why):
            return "\(ledger): its metadata cannot be used: \(why)"
        case .keyUnavailable(let ledger, let reasons):
            return "\(ledger): no bookie of the ledger gave its master key, so no copy can be made now (\(reasons.joined(separator: "; ")))"
        case .placement(let why):
            return "cannot place a ledger: \(why)"
        case .unreachable(let bookie, let why):
            return "bookie \(bookie) is unreachable: \(why)"
        case .tooManyOutstandingAdds(let ledger, let limit):
            return "\(ledger): \(limit) adds are already in flight (the writer's limit); this add was not taken, retry once some are confirmed"
        }
    }
}
