/// Folds repeats of one note into one line per interval: one slow bookie is seen by every ledger that writes to
/// it, and a note per ledger would be hundreds of lines at once. A value with the time passed in, so every rule is
/// tested without a clock; bounded in the keys it remembers.
public struct LogThrottle: Sendable {
    public let interval: Duration
    public let keysMax: Int
    private var last: [String: (at: ContinuousClock.Instant, folded: Int)] = [:]

    public init(interval: Duration = .seconds(10), keysMax: Int = 1_000) {
        precondition(interval > .zero && keysMax > 0, "a throttle needs a positive interval and room for a key")
        self.interval = interval
        self.keysMax = keysMax
    }

    /// Whether the note `key` is logged at `now`: nil while it was logged less than `interval` ago (the repeat is
    /// counted), otherwise how many repeats were folded since it was last logged.
    public mutating func admit(_ key: String, now: ContinuousClock.Instant) -> Int? {
        if let seen = last[key], now - seen.at < interval {
            last[key]!.folded += 1
            return nil
        }
        // Forget every key now and then rather than grow without bound: at worst a note is logged early.
        if last[key] == nil, last.count >= keysMax { last.removeAll() }
        let folded = last[key]?.folded ?? 0
        last[key] = (now, 0)
        return folded
    }
}
