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

    /// The connection this completion answers an add on, if it does.
    private var connection: ConnectionAnswers? {
        guard case .answerAdd(.connection(let answers, _, _, _, _), _, _) = self else { return nil }
        return answers
    }

    /// Whether this completion answers an add on `connection`.
    private func answers(on connection: ConnectionAnswers) -> Bool {
        guard case .answerAdd(.connection(let answers, _, _, _, _), _, _) = self else { return false }
        return answers === connection
    }
}

extension JournalCompletion {
    /// Completes a synced batch's records, in order. Consecutive answers to adds of one connection go into its
    /// batcher in one step: the adds one read of a connection brought are journaled together (`Bookie.add(run:)`),
    /// so a batch answering hundreds of adds takes one batcher lock per run, not one per add, and reads the clock
    /// once per run for their service times. The completions are read in place, never bound whole: each copy of
    /// one is a retain and a release of the connection it answers on, which its event loop touches too.
    static func succeed(_ completions: [JournalCompletion]) {
        var i = 0
        while i < completions.count {
            guard let connection = completions[i].connection else {
                completions[i](.success(()))
                i += 1
                continue
            }
            var end = i + 1
            while end < completions.count, completions[end].answers(on: connection) { end += 1 }
            let run = i ..< end
            connection.batcher.send(count: run.count) { bytes in
                for k in run {
                    guard case .answerAdd(.connection(_, let op, let requestID, _, _), let ledger, let entry)
                        = completions[k] else { continue }
                    BookieResponse.added(ledger: ledger, entry: entry).encode(op: op, requestID: requestID, into: &bytes)
                }
            }
            // Recorded once the answers are handed over, outside the batcher's lock.
            let now = BookieMeters.now
            for k in run {
                guard case .answerAdd(.connection(_, let op, _, let received, let longPoll), _, _)
                    = completions[k] else { continue }
                connection.meters.answered(op, longPoll: longPoll, received: received, at: now)
            }
            i = end
        }
    }
}

/// A connection's answers: where they go (its batcher) and where their service times go (the bookie's meters).
/// One reference per request carries both: an add's answer is copied between the event loop and the journal's
/// thread, and a second reference per answer (a timer every connection shares) cost each copy an atomic on a
/// cache line all threads fought over.
final class ConnectionAnswers: Sendable {
    let batcher: ResponseBatcher
    let meters: BookieMeters

    init(batcher: ResponseBatcher, meters: BookieMeters) {
        self.batcher = batcher
        self.meters = meters
    }
}

/// Where an answer goes: a caller's closure, or straight into a connection's answers (its `ResponseBatcher`,
/// with the request's op and id). A closure made per request to carry the latter cost a heap block and an
/// indirect call for every add.
enum Answer: Sendable {
    case reply(Bookie.Reply)
    /// `received` (`BookieMeters.now`) is when the request arrived: its service time is recorded as it is
    /// answered, under `long_poll` for a READ_LAC that waits, else under its op.
    case connection(ConnectionAnswers, BookieOp, requestID: UInt64, received: UInt64, longPoll: Bool)

    func callAsFunction(_ response: BookieResponse) {
        switch self {
        case .reply(let reply):
            reply(response)
        case .connection(let answers, let op, let requestID, let received, let longPoll):
            answers.batcher.send { response.encode(op: op, requestID: requestID, into: &$0) }
            answers.meters.answered(op, longPoll: longPoll, received: received, at: BookieMeters.now)
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
