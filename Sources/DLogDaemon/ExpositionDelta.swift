import Foundation

/// Two scrapes of one part's metrics, read through its labels, as Prometheus's `rate` and `histogram_quantile`
/// read a range: what counters gained per second, and percentiles of what histograms observed, between them.
/// `dlogctl top` shows a cluster through these.
public struct ExpositionDelta: Sendable {
    /// "ok", or why there is nothing to compare.
    public var status: String
    public var before: Exposition?
    public var after: Exposition?
    /// Only samples carrying these labels count (a standalone's bookie by its `bookie` label).
    public var labels: [String: String] = [:]
    public var seconds = 1.0

    public init(status: String, before: Exposition? = nil, after: Exposition? = nil, labels: [String: String] = [:], seconds: Double = 1) {
        self.status = status
        self.before = before
        self.after = after
        self.labels = labels
        self.seconds = seconds
    }

    private func values(_ exposition: Exposition?, _ name: String,
                        _ matching: ([String: String]) -> Bool) -> [(labels: [String: String], value: Double)] {
        (exposition?.samples ?? []).filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } && matching(sample.labels)
        }.map { ($0.labels, $0.value) }
    }

    /// What the counters named `name` gained per second, summed over their series.
    public func rate(_ name: String) -> Double? {
        let start = values(before, name) { _ in true }, end = values(after, name) { _ in true }
        guard !end.isEmpty else { return nil }
        let gained = end.map(\.value).reduce(0, +) - start.map(\.value).reduce(0, +)
        // A counter that went back restarted with its process: what it counts since is the best figure.
        return ((gained >= 0 ? gained : end.map(\.value).reduce(0, +)) / seconds * 10).rounded() / 10
    }

    public func gauge(_ name: String) -> Double? { gauges(name).first }
    public func gauges(_ name: String) -> [Double] { values(after, name) { _ in true }.map(\.value) }

    /// The 99th percentile, in milliseconds, of what histogram `name` observed between the scrapes, over
    /// its series that `matching` accepts; nil when it observed nothing.
    public func p99Ms(_ name: String, _ matching: ([String: String]) -> Bool = { _ in true }) -> Double? {
        func buckets(_ exposition: Exposition?) -> [Double: Double] {
            var out: [Double: Double] = [:]
            for sample in values(exposition, name + "_bucket", matching) {
                guard let le = sample.labels["le"].flatMap({ $0 == "+Inf" ? .infinity : Double($0) }) else { continue }
                out[le, default: 0] += sample.value
            }
            return out
        }
        let start = buckets(before)
        let gained = buckets(after).map { (bound: $0.key, count: $0.value - (start[$0.key] ?? 0)) }
        return Self.quantile(0.99, gained).map { ($0 * 1_000_000).rounded() / 1000 }
    }

    /// The `q` quantile of cumulative buckets (upper bound, count up to it), interpolated within the bucket it
    /// falls in; one falling in the +Inf bucket is the highest finite bound.
    public static func quantile(_ q: Double, _ buckets: [(bound: Double, count: Double)]) -> Double? {
        let sorted = buckets.sorted { $0.bound < $1.bound }
        guard let total = sorted.last?.count, total > 0 else { return nil }
        let rank = q * total
        var lower = 0.0, below = 0.0
        for bucket in sorted {
            if bucket.count >= rank {
                guard bucket.bound.isFinite else { return lower }
                let inBucket = bucket.count - below
                return inBucket > 0 ? lower + (bucket.bound - lower) * (rank - below) / inBucket : bucket.bound
            }
            lower = bucket.bound
            below = bucket.count
        }
        return lower
    }
}
