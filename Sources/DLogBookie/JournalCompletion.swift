import DLogWire

/// What the journal does once a record is durable, or once it failed. Most records are adds, answered straight
/// from here: a closure made per add to wrap the answer cost a heap block and an indirect call for each.
enum JournalCompletion: Sendable {
    case call(@Sendable (Result<Void, JournalError>) -> Void)
    /// Answers an ADD of this entry: `.added`, or the failure as `Bookie.failure` names it.
    case answerAdd(Answer, LedgerID, EntryID)

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

/// Where an answer goes: a caller's closure, or straight into a connection's answers (its `ResponseBatcher`,
/// with the request's op and id). A closure made per request to carry the latter cost a heap block and an
/// indirect call for every add.
enum Answer: Sendable {
    case reply(Bookie.Reply)
    case connection(ResponseBatcher, BookieOp, requestID: UInt64)

    func callAsFunction(_ response: BookieResponse) {
        switch self {
        case .reply(let reply):
            reply(response)
        case .connection(let batcher, let op, let requestID):
            batcher.send { response.encode(op: op, requestID: requestID, into: &$0) }
        }
    }

    /// As a closure, for the calls that take one.
    var reply: Bookie.Reply {
        switch self {
        case .reply(let reply): return reply
        case .connection: return { [self] response in self(response) }
        }
    }
}
