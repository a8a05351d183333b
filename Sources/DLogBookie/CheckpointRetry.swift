/// When to try a failing checkpoint again and what to say about it: a policy value with no I/O, owned by the
/// background thread.
///
/// A checkpoint that fails (a full or broken ledger disk) is asked for again at once by every sync that
/// finds the cache full, and every attempt opens a new entry log. Retrying on each ask would spin the
/// background thread and write an error line a hundred times a second, burying the one line that names the
/// cause. So attempts back off, doubling from `firstDelay` up to `delayMax`; the first failure is logged at
/// once, a repeat of the same failure only after `repeatLogInterval` (with the count since), a new failure
/// at once, and the recovery once.
struct CheckpointRetry {
    static let firstDelay = Duration.milliseconds(50)
    static let delayMax = Duration.seconds(2)
    static let repeatLogInterval = Duration.seconds(60)

    /// What the caller logs after an attempt.
    enum Report: Equatable {
        case quiet
        /// `failures` in a row so far, the one just recorded included.
        case failing(error: String, failures: Int)
        /// Checkpoints work again after `failures` in a row.
        case recovered(failures: Int)
    }

    /// Failed attempts since the last success.
    private(set) var failures = 0
    /// The earliest time the next attempt may run, while checkpoints fail.
    private(set) var notBefore: ContinuousClock.Instant?
    private var lastLogged: (error: String, at: ContinuousClock.Instant)?

    /// True when an attempt may run at `now`: always while checkpoints work, after the back-off otherwise.
    func allows(_ now: ContinuousClock.Instant) -> Bool {
        notBefore.map { now >= $0 } ?? true
    }

    /// Records an attempt that ended at `now`, failing with `error` or succeeding (nil).
    mutating func record(_ error: String?, at now: ContinuousClock.Instant) -> Report {
        guard let error else {
            defer { failures = 0; notBefore = nil; lastLogged = nil }
            return failures > 0 ? .recovered(failures: failures) : .quiet
        }
        failures += 1
        notBefore = now + Self.delay(afterFailures: failures)
        if let last = lastLogged, last.error == error, now - last.at < Self.repeatLogInterval { return .quiet }
        lastLogged = (error, now)
        return .failing(error: error, failures: failures)
    }

    /// The wait after `failures` failures in a row (at least 1).
    static func delay(afterFailures failures: Int) -> Duration {
        precondition(failures >= 1, "a delay follows a failure")
        // Doubling past 2^6 × 50 ms is beyond the cap anyway; the bound keeps the shift from overflowing.
        let delay = firstDelay * (1 << min(failures - 1, 6))
        return min(delay, delayMax)
    }
}
