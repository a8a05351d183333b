import DLogDaemon
import DLogMetadata
import Foundation

/// One frame of `dlogctl top`, from two samples: per bookie its state, adds/s, add and sync p99 and disk use;
/// per proxy its streams, writes/s and write p99; the metadata store's round trip and each metadata role's
/// requests/s. Rates and percentiles are over the interval between the samples, computed from what the
/// counters and histogram buckets gained (as Prometheus's `rate` and `histogram_quantile` would); a part
/// without a metrics port, or whose port did not answer, shows its registration only, and says why.
struct TopView: Codable, Sendable {
    struct Metadata: Codable, Sendable {
        var uri: String
        var roundTripMs: Double
        var servers: [MetadataServer]
    }

    struct MetadataServer: Codable, Sendable {
        var id: String
        var requestsPerSecond: Double?
        var requestP99Ms: Double?
        var leases: Double?
        var watchers: Double?
        var revision: Double?
        var metrics: String
    }

    struct Bookie: Codable, Sendable {
        var id: String
        var address: String
        /// writable, read-only, or not registered (its metrics answer but it has no registration).
        var state: String
        var rack: String
        var addsPerSecond: Double?
        var addP99Ms: Double?
        var syncP99Ms: Double?
        /// The fullest of its journal and ledger file systems.
        var diskUsedRatio: Double?
        /// "ok", "no metrics port", or why its metrics could not be read.
        var metrics: String
    }

    struct Proxy: Codable, Sendable {
        var id: String
        var address: String
        var streams: Double?
        var writesPerSecond: Double?
        var writeP99Ms: Double?
        var failuresPerSecond: Double?
        var metrics: String
    }

    var time: String
    var intervalSeconds: Double
    var metadata: Metadata
    var bookies: [Bookie]
    var proxies: [Proxy]

    init(from a: TopSample, to b: TopSample, uri: String) {
        let seconds = max((b.at - a.at) / .seconds(1), 0.001)
        time = ISO8601DateFormatter().string(from: b.wallClock)
        intervalSeconds = (seconds * 1000).rounded() / 1000
        func pair(_ endpoint: MetricsEndpoint?) -> ExpositionDelta {
            guard let endpoint else { return ExpositionDelta(status: "no metrics port") }
            switch (a.scrapes[endpoint.address], b.scrapes[endpoint.address]) {
            case (.success(let before), .success(let after)):
                return ExpositionDelta(status: "ok", before: before, after: after, labels: endpoint.labels, seconds: seconds)
            case (_, .failure(let failure)), (.failure(let failure), _):
                return ExpositionDelta(status: failure.description)
            default:
                // It appeared between the samples: the next frame has two scrapes of it.
                return ExpositionDelta(status: "new since the last sample")
            }
        }
        func endpoint(_ role: String, _ id: String) -> MetricsEndpoint? {
            b.endpoints.first { $0.role == role && $0.id == id }
        }

        let roundTrip = (try? b.roundTrip.get()) ?? .zero
        metadata = Metadata(uri: uri, roundTripMs: Self.millis(roundTrip / .seconds(1)),
                            servers: b.endpoints.filter { $0.role == "metadata" }.map { server in
            let m = pair(server)
            return MetadataServer(id: server.id, requestsPerSecond: m.rate("dlog_metadata_request_duration_seconds_count"),
                                  requestP99Ms: m.p99Ms("dlog_metadata_request_duration_seconds"),
                                  leases: m.gauge("dlog_metadata_leases"), watchers: m.gauge("dlog_metadata_watchers"),
                                  revision: m.gauge("dlog_metadata_revision"), metrics: m.status)
        })

        var bookieIDs = b.bookies.map(\.id.rawValue)
        bookieIDs += b.endpoints.filter { $0.role == "bookie" && !bookieIDs.contains($0.id) }.map(\.id)
        bookies = bookieIDs.sorted().map { id in
            let registration = b.bookies.first { $0.id.rawValue == id }
            let m = pair(endpoint("bookie", id))
            let registeredUse = registration?.disks.filter { $0.totalBytes > 0 }
                .map { 1 - Double($0.freeBytes) / Double($0.totalBytes) }.max()
            return Bookie(id: id, address: registration?.address ?? "-",
                          state: registration.map { $0.readOnly ? "read-only" : "writable" } ?? "not registered",
                          rack: registration?.rack ?? "",
                          addsPerSecond: m.rate("dlog_bookie_adds_total"),
                          addP99Ms: m.p99Ms("dlog_bookie_request_duration_seconds") { ["add", "add_batch"].contains($0["op"]) },
                          syncP99Ms: m.p99Ms("dlog_journal_sync_duration_seconds"),
                          diskUsedRatio: m.gauges("dlog_bookie_disk_used_ratio").max() ?? registeredUse,
                          metrics: m.status)
        }

        var proxyIDs = b.proxies.map(\.id)
        proxyIDs += b.endpoints.filter { $0.role == "proxy" && !proxyIDs.contains($0.id) }.map(\.id)
        proxies = proxyIDs.sorted().map { id in
            let m = pair(endpoint("proxy", id))
            return Proxy(id: id, address: b.proxies.first { $0.id == id }?.address ?? "-",
                         streams: m.gauge("dlog_proxy_streams_owned"),
                         writesPerSecond: m.rate("dlog_proxy_records_written_total"),
                         writeP99Ms: m.p99Ms("dlog_proxy_request_duration_seconds") { ["write", "write_bulk"].contains($0["op"]) },
                         failuresPerSecond: m.rate("dlog_proxy_failures_total"), metrics: m.status)
        }
    }

    static func millis(_ seconds: Double) -> Double { (seconds * 1_000_000).rounded() / 1000 }
}
