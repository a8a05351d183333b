/// When a client may try connecting to a bookie again: at once after a connection that worked, then after a
/// wait that doubles with every failed attempt (`first`, 2×`first`, … up to `max`). Pure state; the pool asks
/// it before connecting and tells it how the attempt went.
struct ReconnectBackoff: Sendable {
    let first: Duration
    let max: Duration
    private(set) var failures = 0
    private var retryAt: ContinuousClock.Instant?
    private var lastError = ""

    init(first: Duration, max: Duration) {
        precondition(first > .zero && max >= first, "backoff needs 0 < first ≤ max")
        self.first = first
        self.max = max
    }

    /// Why an attempt now must not be made, or nil when it may.
    func refusal(at now: ContinuousClock.Instant) -> String? {
        guard let retryAt, now < retryAt else { return nil }
        return "\(failures) connection attempt\(failures == 1 ? "" : "s") failed (last: \(lastError)); "
            + "next attempt in \(retryAt - now)"
    }

    /// The wait after `failures` consecutive failures.
    var delay: Duration {
        guard failures > 0 else { return .zero }
        var wait = first
        for _ in 1..<Swift.min(failures, 32) where wait < max { wait *= 2 }
        return Swift.min(wait, max)
    }

    mutating func failed(_ why: String, at now: ContinuousClock.Instant) {
        failures += 1
        lastError = why
        retryAt = now + delay
    }

    mutating func succeeded() {
        failures = 0
        retryAt = nil
        lastError = ""
    }
}
