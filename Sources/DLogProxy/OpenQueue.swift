import DequeModule
import Synchronization

/// Stream opens run at most `limit` at once, first come first served. Thousands of writers starting together
/// used to open all their streams in parallel: every open shared the proxy, the metadata role and the bookies
/// at once, so every answer came at the end of the burst, and a client that waited its request timeout for the
/// first of them gave up on a live proxy and sent again. In order, the first opens finish at once and answers
/// flow all through the burst; the whole burst takes no longer.
final class OpenQueue: Sendable {
    private struct State {
        var running = 0
        var waiting = Deque<CheckedContinuation<Void, Never>>()
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        precondition(limit > 0, "an open queue lets at least one open run")
        self.limit = limit
    }

    /// Opens waiting for their turn (for status and tests).
    var waiting: Int { state.withLock { $0.waiting.count } }

    /// Runs `open` when fewer than `limit` others run. Waiting is not cancelled: an open once asked for is
    /// shared by every request for its stream, so it runs to its end.
    func run<T: Sendable>(_ open: @Sendable () async throws -> T) async throws -> T {
        await withCheckedContinuation { (turn: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                guard s.running < limit else {
                    s.waiting.append(turn)
                    return false
                }
                s.running += 1
                return true
            }
            if now { turn.resume() }
        }
        defer {
            // The turn passes straight to the next waiter, so `running` stays counted for it.
            let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
                if let next = s.waiting.popFirst() { return next }
                s.running -= 1
                return nil
            }
            next?.resume()
        }
        return try await open()
    }
}
