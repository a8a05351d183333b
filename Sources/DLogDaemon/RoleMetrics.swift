import DLogWire
import DLogMetadata
import DLogProxy

/// The proxy's and the metadata role's metrics in Prometheus text (the bookie's are in `BookieMetrics`).
enum RoleMetrics {
    static func proxy(_ service: ProxyService, permissionDenied: UInt64 = 0) -> String {
        let c = service.counters
        var out = PrometheusText()
        out.metric("dlog_proxy_permission_denied_total", "counter", "requests refused as PERMISSION_DENIED",
                   [([:], Double(permissionDenied))])
        out.metric("dlog_proxy_streams_owned", "gauge", "streams this proxy owns", [([:], Double(c.streamsOwned))])
        out.metric("dlog_proxy_records_written_total", "counter", "records written and acknowledged", [([:], Double(c.recordsWritten))])
        out.metric("dlog_proxy_requests_total", "counter", "requests by operation",
                   c.requests.sorted { $0.key < $1.key }.map { (["op": $0.key], Double($0.value)) })
        // Every status from the start, at 0 until it happens: a rate over a series that does not exist yet shows
        // nothing rather than 0.
        var failures = c.failures
        for raw in UInt16(1)...UInt16(64) {
            if let status = ProxyStatus(rawValue: raw) { failures["\(status)", default: 0] += 0 }
        }
        out.metric("dlog_proxy_failures_total", "counter", "requests answered with an error, by status",
                   failures.sorted { $0.key < $1.key }.map { (["status": $0.key], Double($0.value)) })
        return out.text
    }

    static func metadata(_ stats: EmbeddedStats, permissionDenied: UInt64 = 0) -> String {
        var out = PrometheusText()
        out.metric("dlog_metadata_permission_denied_total", "counter", "requests refused as PERMISSION_DENIED",
                   [([:], Double(permissionDenied))])
        out.metric("dlog_metadata_revision", "gauge", "the store's current revision", [([:], Double(stats.revision))])
        out.metric("dlog_metadata_leases", "gauge", "live leases", [([:], Double(stats.leases))])
        out.metric("dlog_metadata_watchers", "gauge", "open watches", [([:], Double(stats.watchers))])
        out.metric("dlog_metadata_commits_total", "counter", "transactions committed", [([:], Double(stats.commits))])
        out.metric("dlog_metadata_batches_total", "counter", "group commits (SQLite transactions)", [([:], Double(stats.batches))])
        return out.text
    }
}
