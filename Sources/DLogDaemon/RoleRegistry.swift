import CoreMetrics
import DLogBookie
import DistributedLog
import Prometheus
import Synchronization

/// One role's metrics registry. The role's parts (the bookie and its journals, the proxy, the metadata server)
/// and the client libraries it runs record their distributions through swift-metrics into `factory`; the
/// counters and gauges read from live state at each scrape come from the role's `live` text. `render()` is
/// the one exposition of the role, for its metrics port and its admin socket alike.
final class RoleRegistry: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    /// Set once the role's parts exist (they need `factory` first).
    private let live = Mutex<(@Sendable () -> String)?>(nil)

    /// Latency buckets, from 50 µs (a cached read) to 10 s (a request behind a stalled disk).
    static let durationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.durationBuckets
        factory.valueHistogramBuckets[JournalMeters.batchRecordsLabel] = JournalMeters.recordBuckets
        factory.valueHistogramBuckets[JournalMeters.batchBytesLabel] = JournalMeters.byteBuckets
        factory.valueHistogramBuckets[LogMeters.recordsPerEntryLabel] = LogMeters.recordsPerEntryBuckets
        self.factory = factory
    }

    /// Where the live counters and gauges come from, once the role's parts exist.
    func showing(_ text: @escaping @Sendable () -> String) {
        live.withLock { $0 = text }
    }

    /// Prometheus text: the live counters and gauges, then the recorded distributions.
    func render() -> String { (live.withLock { $0 }?() ?? "") + registry.emitToString() }
}
