/// A token bucket: `rate` tokens per second, holding at most one second's worth. A request fits when enough
/// tokens are there, or when the bucket is full (so one request larger than a second's worth goes through and
/// leaves the bucket in debt, instead of never fitting). Pure: the caller passes the time.
public struct TokenBucket: Sendable {
    public let rate: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant

    public init(rate: Double, now: ContinuousClock.Instant) {
        precondition(rate > 0, "a bucket needs a positive rate")
        self.rate = rate
        tokens = rate
        updated = now
    }

    /// Whether `amount` fits now (refilling first); nothing is taken.
    public mutating func fits(_ amount: Double, now: ContinuousClock.Instant) -> Bool {
        let elapsed = now - updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(rate, tokens + max(0, seconds) * rate)
        updated = now
        return tokens >= amount || tokens >= rate
    }

    public mutating func take(_ amount: Double, now: ContinuousClock.Instant) -> Bool {
        guard fits(amount, now: now) else { return false }
        tokens -= amount
        return true
    }
}

/// Rates a proxy enforces, per stream and for the whole proxy: records/s and bytes/s, each with a soft limit
/// (past it, a warning is logged) and a hard one (past it, writes are refused with OVER_CAPACITY). 0 is off.
public struct ProxyLimits: Sendable, Equatable {
    public var streamRecordsSoft: Double = 0
    public var streamRecordsHard: Double = 0
    public var streamBytesSoft: Double = 0
    public var streamBytesHard: Double = 0
    public var proxyRecordsSoft: Double = 0
    public var proxyRecordsHard: Double = 0
    public var proxyBytesSoft: Double = 0
    public var proxyBytesHard: Double = 0

    public init() {}
}

/// The buckets of one scope (a stream, or the proxy): what a write of `records` records and `bytes` bytes
/// meets.
public struct RateCheck: Sendable {
    public enum Outcome: Equatable, Sendable {
        case allowed
        /// Over a soft limit (the write goes through; say so).
        case soft(String)
        /// Over a hard limit: refuse.
        case hard(String)
    }

    private var recordsSoft: TokenBucket?
    private var recordsHard: TokenBucket?
    private var bytesSoft: TokenBucket?
    private var bytesHard: TokenBucket?
    let scope: String

    public init(scope: String, records: (soft: Double, hard: Double), bytes: (soft: Double, hard: Double),
                now: ContinuousClock.Instant) {
        self.scope = scope
        recordsSoft = records.soft > 0 ? TokenBucket(rate: records.soft, now: now) : nil
        recordsHard = records.hard > 0 ? TokenBucket(rate: records.hard, now: now) : nil
        bytesSoft = bytes.soft > 0 ? TokenBucket(rate: bytes.soft, now: now) : nil
        bytesHard = bytes.hard > 0 ? TokenBucket(rate: bytes.hard, now: now) : nil
    }

    /// What a write meets. Nothing is charged for a write refused by a hard limit; a soft limit charges and
    /// lets it through.
    public mutating func check(records: Int, bytes: Int, now: ContinuousClock.Instant) -> Outcome {
        if let bucket = recordsHard, !recordsHard!.fits(Double(records), now: now) {
            return .hard("\(scope) is over its hard limit of \(Int(bucket.rate)) records/s")
        }
        if let bucket = bytesHard, !bytesHard!.fits(Double(bytes), now: now) {
            return .hard("\(scope) is over its hard limit of \(Int(bucket.rate)) bytes/s")
        }
        _ = recordsHard?.take(Double(records), now: now)
        _ = bytesHard?.take(Double(bytes), now: now)
        if let bucket = recordsSoft, !recordsSoft!.take(Double(records), now: now) {
            return .soft("\(scope) is over its soft limit of \(Int(bucket.rate)) records/s")
        }
        if let bucket = bytesSoft, !bytesSoft!.take(Double(bytes), now: now) {
            return .soft("\(scope) is over its soft limit of \(Int(bucket.rate)) bytes/s")
        }
        return .allowed
    }
}
