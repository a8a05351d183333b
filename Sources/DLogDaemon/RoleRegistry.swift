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
    func render() -> String { (live.withLock { $0 }?() ?? "") + Self.helping(registry.emitToString()) }

    /// What each recorded distribution measures. swift-metrics carries no help text, so the registry emits
    /// none; scrapers and `promtool check metrics` expect one, so `render()` puts these in front of each family.
    static let help: [String: String] = [
        "dlog_bookie_request_duration_seconds": "service time of each bookie request, by operation",
        "dlog_journal_queue_wait_seconds": "each time the journal's writer takes records, how long the oldest of them waited in the queue",
        "dlog_journal_sync_duration_seconds": "time of each write and sync of a group commit",
        "dlog_journal_batch_records": "records per group commit",
        "dlog_journal_batch_bytes": "bytes per group commit (padded to the sector)",
        "dlog_metadata_request_duration_seconds": "service time of each metadata request, by operation",
        "dlog_proxy_request_duration_seconds": "service time of each proxy request, by operation",
        "dlog_log_records_per_entry": "records each log entry carried",
        "dlog_client_add_duration_seconds": "from an add's send to its confirmation by the ack quorum",
        "dlog_client_read_duration_seconds": "one entry's read, from the first replica asked to the answer used",
        "dlog_client_ensemble_change_duration_seconds": "how long each ensemble change held a writer's adds",
        "dlog_recovery_ledger_duration_seconds": "how long this worker took to re-replicate each ledger it repaired",
    ]

    /// `text` with a `# HELP` line before each family's `# TYPE` line that `help` describes and has none.
    static func helping(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count + 2048)
        var previous: Substring = ""
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE "), !previous.hasPrefix("# HELP "),
               let name = line.dropFirst(7).split(separator: " ").first, let described = help[String(name)] {
                out += "# HELP \(name) \(described)\n"
            }
            out += line
            out += "\n"
            previous = line
        }
        return out
    }
}
