import DLogWire

extension BookieRequest {
    /// Why an entry id in the request can never name anything, or nil. Entry ids start at 0; -1 means "the
    /// last" to READ and "none yet" as a LAC. ADD checks its entry's own id (`Bookie.add`); LIST_ENTRIES lists
    /// from 0 for a negative start (docs/protocol.md).
    var entryIDRefusal: String? {
        switch self {
        case .read(let ledger, let entry, _) where entry.rawValue < -1:
            return "READ of entry \(entry.rawValue) of \(ledger): entry ids start at 0 (-1 asks for the last)"
        case .readLAC(let ledger, let poll?) where poll.previous.rawValue < -1:
            return "READ_LAC of \(ledger) waits for a LAC past \(poll.previous.rawValue); a LAC is -1 (none yet) "
                + "or an entry id, which starts at 0"
        case .writeLAC(let ledger, _, let lac) where lac.rawValue < -1:
            return "WRITE_LAC of \(ledger) with \(lac.rawValue); a LAC is -1 (none yet) or an entry id, which starts at 0"
        default:
            return nil
        }
    }
}
