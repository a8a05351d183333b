import DLogWire
import NIOCore
import Synchronization

/// One long poll for a LAC past `previous` over the bookies of a fragment, asked in a given order: the first at
/// once, the rest when every bookie asked so far has answered without progress, or when the spread delay runs
/// out. It ends at the first LAC past `previous`, or once every bookie has answered. Answers come in on event
/// loops and the spread delay is an event-loop timer, so a tailing reader's wait for each entry costs no task
/// per bookie and no task per timer.
final class LACPoll: Sendable {
    struct Outcome {
        /// The highest LAC reported (at least the one the poll started from).
        var best: EntryID
        /// Bookies that answered with a LAC (the others failed).
        var answered: Int
    }

    private struct State {
        var asked = 0
        var received = 0
        var answered = 0
        var best: EntryID
        var done = false
        var waiter: CheckedContinuation<Outcome, Never>?
        var spread: Scheduled<Void>?
    }

    let previous: EntryID
    let bookies: Int
    /// Asks the bookie at this index of the order; it must call `answered` exactly once for it.
    private let ask: @Sendable (Int, LACPoll) -> Void
    private let state: Mutex<State>

    init(previous: EntryID, known: EntryID, bookies: Int, ask: @escaping @Sendable (Int, LACPoll) -> Void) {
        precondition(bookies >= 1, "a poll needs a bookie to ask")
        self.previous = previous
        self.bookies = bookies
        self.ask = ask
        state = Mutex(State(best: known))
    }

    /// Polls, and waits until the poll ends (or the task is cancelled: then with what came so far). The first
    /// bookie is asked, and the spread timer armed, on `loop`: the loop of the connection to that bookie, so
    /// its request goes out, its answer comes in and the timer is cancelled all on one thread, with one hop to
    /// it (a timer on another loop cost a hop to arm and another to cancel, for every poll). Without a loop
    /// (the client is shutting down), every bookie is asked at once.
    func run(spreadAfter delay: Duration, on loop: EventLoop?) async -> Outcome {
        await withTaskCancellationHandler {
            await withCheckedContinuation { waiter in
                let ended = state.withLock { s -> Outcome? in
                    if s.done { return Outcome(best: s.best, answered: s.answered) }
                    s.waiter = waiter
                    s.asked = 1
                    return nil
                }
                if let ended { return waiter.resume(returning: ended) }
                guard let loop else {
                    ask(0, self)
                    return askTheRest()
                }
                loop.execute { self.start(spreadAfter: delay, on: loop) }
            }
        } onCancel: {
            finish()
        }
    }

    private func start(spreadAfter delay: Duration, on loop: EventLoop) {
        ask(0, self)
        let timer = loop.scheduleTask(in: TimeAmount(delay)) { self.askTheRest() }
        let over = state.withLock { s -> Bool in
            if !s.done { s.spread = timer }
            return s.done
        }
        if over { timer.cancel() }
    }

    /// The answer of one bookie asked: the LAC it reported, nil when it failed.
    func answered(_ lac: EntryID?) {
        enum Step { case wait, askRest(Range<Int>), finish }
        let step = state.withLock { s -> Step in
            s.received += 1
            if let lac {
                s.answered += 1
                s.best = max(s.best, lac)
            }
            if s.done { return .wait }
            // The first bookie to see progress is enough: any LAC a bookie knows was confirmed.
            if s.best > previous || s.received == bookies { return .finish }
            guard s.received == s.asked else { return .wait }
            // Every bookie asked so far answered without progress: ask the rest now, not after the delay.
            defer { s.asked = bookies }
            return .askRest(s.asked..<bookies)
        }
        switch step {
        case .wait: break
        case .askRest(let rest): for index in rest { ask(index, self) }
        case .finish: finish()
        }
    }

    private func askTheRest() {
        let rest = state.withLock { s -> Range<Int>? in
            guard !s.done, s.asked < bookies else { return nil }
            defer { s.asked = bookies }
            return s.asked..<bookies
        }
        for index in rest ?? 0..<0 { ask(index, self) }
    }

    private func finish() {
        let (waiter, outcome, timer) = state.withLock { s -> (CheckedContinuation<Outcome, Never>?, Outcome, Scheduled<Void>?) in
            s.done = true
            defer {
                s.waiter = nil
                s.spread = nil
            }
            return (s.waiter, Outcome(best: s.best, answered: s.answered), s.spread)
        }
        timer?.cancel()
        waiter?.resume(returning: outcome)
    }
}
