import DLogWire

/// What the journal does once a record is durable, or once it failed. Most records are adds, answered straight
/// from here: a closure made per add to wrap the answer cost a heap block and an indirect call for each.
enum JournalCompletion: Sendable {
    case call(@Sendable (Result<Void, JournalError>) -> Void)
    /// Answers an ADD of this entry: `.added`, or the failure as `Bookie.failure` names it.
    case answerAdd(Bookie.Reply, LedgerID, EntryID)

    func callAsFunction(_ result: Result<Void, JournalError>) {
        switch self {
        case .call(let body):
            body(result)
        case .answerAdd(let reply, let ledger, let entry):
            switch result {
            case .success: reply(.added(ledger: ledger, entry: entry))
            case .failure(let error): reply(Bookie.failure(error))
            }
        }
    }
}
