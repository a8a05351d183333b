/// Paces re-replication to a byte rate, so copies share the disks with foreground adds instead of taking
/// them over: a token bucket holding at most one second of bytes. A pure value; the worker sleeps for what
/// `spend` returns.
public struct CopyPacer: Sendable {
    public let bytesPerSecond: Int
    private var available: Double
    private var last: ContinuousClock.Instant?

    /// `bytesPerSecond` 0 means unpaced.
    public init(bytesPerSecond: Int) {
        precondition(bytesPerSecond >= 0, "a rate is not negative")
        self.bytesPerSecond = bytesPerSecond
        available = Double(bytesPerSecond)
    }

    /// Takes `bytes` (already copied: their size is known only after the read) and returns how long to wait
    /// before the next copy, so that over any second no more than the rate (plus one second's burst) goes out.
    public mutating func spend(_ bytes: Int, now: ContinuousClock.Instant) -> Duration {
        precondition(bytes >= 0)
        guard bytesPerSecond > 0 else { return .zero }
        let rate = Double(bytesPerSecond)
        if let last { available = min(rate, available + rate * (now - last).seconds) }
        last = now
        available -= Double(bytes)
        guard available < 0 else { return .zero }
        return .milliseconds(Int64((-available / rate * 1000).rounded(.up)))
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
