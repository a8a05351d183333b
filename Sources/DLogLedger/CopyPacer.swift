/// Paces re-replication to a byte rate, so copies share the disks with foreground adds instead of taking
/// them over: a token bucket holding at most `burst` worth of bytes. A pure value; the worker sleeps for what
/// `spend` returns.
public struct CopyPacer: Sendable {
    public let bytesPerSecond: Int
    /// The most bytes that go at once after an idle time. Short (a tenth of a second by default): a burst at full
    /// speed is what foreground adds feel, as a spike in their latency.
    private let capacity: Double
    private var available: Double
    private var last: ContinuousClock.Instant?

    /// `bytesPerSecond` 0 means unpaced.
    public init(bytesPerSecond: Int, burst: Duration = .milliseconds(100)) {
        precondition(bytesPerSecond >= 0, "a rate is not negative")
        precondition(burst > .zero, "a burst lasts some time")
        self.bytesPerSecond = bytesPerSecond
        capacity = Double(bytesPerSecond) * burst.seconds
        available = capacity
    }

    /// Takes `bytes` (already copied: their size is known only after the read) and returns how long to wait
    /// before the next copy, so that over any time T no more than the rate × T plus one burst goes out.
    public mutating func spend(_ bytes: Int, now: ContinuousClock.Instant) -> Duration {
        precondition(bytes >= 0)
        guard bytesPerSecond > 0 else { return .zero }
        let rate = Double(bytesPerSecond)
        if let last { available = min(capacity, available + rate * (now - last).seconds) }
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
