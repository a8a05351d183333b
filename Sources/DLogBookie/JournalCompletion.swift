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

extension JournalCompletion {
    /// Completes a synced batch's records, in order. Consecutive answers to adds of one connection go into its
    /// batcher in one step: the adds one read of a connection brought are journaled together (`Bookie.add(run:)`),
    /// so a batch answering hundreds of adds takes one batcher lock per run, not one per add.
    static func succeed(_ completions: [JournalCompletion]) {
        var i = 0
        while i < completions.count {
            guard case .answerAdd(.connection(let batcher, _, _, _), _, _) = completions[i] else {
                completions[i](.success(()))
                i += 1
                continue
            }
            var end = i + 1
            while end < completions.count, case .answerAdd(.connection(let next, _, _, _), _, _) = completions[end],
                  next === batcher {
                end += 1
            }
            let run = completions[i ..< end]
            batcher.send(count: run.count) { bytes in
                for c in run {
                    guard case .answerAdd(.connection(_, let op, let requestID, _), let ledger, let entry) = c else { continue }
                    BookieResponse.added(ledger: ledger, entry: entry).encode(op: op, requestID: requestID, into: &bytes)
                }
            }
            // Recorded once the answers are handed over, outside the batcher's lock.
            for c in run {
                if case .answerAdd(.connection(_, _, _, let timing?), _, _) = c { timing.answered() }
            }
            i = end
        }
    }
}

/// Where an answer goes: a caller's closure, or straight into a connection's answers (its `ResponseBatcher`,
/// with the request's op and id). A closure made per request to carry the latter cost a heap block and an
/// indirect call for every add.
enum Answer: Sendable {
    case reply(Bookie.Reply)
    /// With `timing`, the request's service time is recorded as it is answered.
    case connection(ResponseBatcher, BookieOp, requestID: UInt64, timing: RequestTiming?)

    func callAsFunction(_ response: BookieResponse) {
        switch self {
        case .reply(let reply):
            reply(response)
        case .connection(let batcher, let op, let requestID, let timing):
            batcher.send { response.encode(op: op, requestID: requestID, into: &$0) }
            timing?.answered()
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
