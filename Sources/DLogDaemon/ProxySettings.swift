import DistributedLog
import DLogLedger
import DLogMetadata
import DLogProxy

/// Every setting of the proxy role, with its default, the key that sets it, and its check.
public struct ProxySettings: Sendable {
    public var metadata = "dlog://127.0.0.1:3180"
    public var host = "127.0.0.1"
    public var port = 3190
    /// The address clients are redirected to; `host` when not set.
    public var advertisedHost: String?
    /// The proxy's name among the proxies; "advertised host:port" when not set.
    public var proxyID: String?
    public var streamsMax = 10_000
    public var limits = ProxyLimits()
    public var log = LogOptions()
    public var ioThreads = 1
    /// The admin socket's path (`dlogctl admin`); nil: /run/dlog/INSTANCE.sock when /run/dlog exists.
    public var adminSocket: String?
    /// Prometheus metrics over HTTP on this port (`host`); nil: none.
    public var metricsPort: Int?
    /// TLS on the port and on the role's own connections (docs/security.md).
    public var tls = TLSSettings()
    /// What the port lets each client hold, and how long.
    public var connections = ConnectionSettings()

    public init() {}

    public static let keys: Set<String> = ([
        "metadata", "host", "port", "advertised_host", "proxy_id", "streams_max", "io_threads",
        "stream_records_soft", "stream_records_hard", "stream_bytes_soft", "stream_bytes_hard",
        "proxy_records_soft", "proxy_records_hard", "proxy_bytes_soft", "proxy_bytes_hard",
        "ensemble", "write_quorum", "ack_quorum", "segment_bytes_max", "segment_age_s", "retention_hours",
        "ownership_lease_s", "compression", "admin_socket", "role", "metrics_port", "log_level",
    ] as Set<String>).union(TLSSettings.keys).union(ConnectionSettings.keys)

    public mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem) {
        if let m = try file.nonEmpty("metadata", allowed: "dlog://host:port[,host:port] or etcd://host:port[,host:port]/prefix") {
            do { _ = try MetadataURI(parsing: m) } catch { throw ConfigFile.Problem(message: "\(file.location("metadata")): \(error)") }
            metadata = m
        }
        if let h = try file.nonEmpty("host", allowed: "an address or host name") { host = h }
        if let p = try file.int("port", 0...65535) { port = p }
        if let a = try file.nonEmpty("advertised_host", allowed: "an address or host name") { advertisedHost = a }
        if let i = try file.nonEmpty("proxy_id", allowed: "a name of letters, digits, '.', '_', '-'") {
            guard LogName.subscriptionProblem(i) == nil else {
                throw file.problem("proxy_id", allowed: "a name of letters, digits, '.', '_', '-'")
            }
            proxyID = i
        }
        if let n = try file.int("streams_max", 1...1_000_000) { streamsMax = n }
        if let n = try file.int("io_threads", 1...64) { ioThreads = n }
        if let a = try file.nonEmpty("admin_socket", allowed: "a socket path") { adminSocket = a }
        if let p = try file.int("metrics_port", 0...65535) { metricsPort = p }
        try tls.apply(file)
        try connections.apply(file)
        if let named = file.string("role"), named != "proxy" {
            throw file.problem("role", allowed: "proxy (this is the proxy role's config; run `dlogd --config FILE` to start the role a file names)")
        }
        let rate = 0...1_000_000_000_000
        if let n = try file.int("stream_records_soft", rate) { limits.streamRecordsSoft = Double(n) }
        if let n = try file.int("stream_records_hard", rate) { limits.streamRecordsHard = Double(n) }
        if let n = try file.int("stream_bytes_soft", rate) { limits.streamBytesSoft = Double(n) }
        if let n = try file.int("stream_bytes_hard", rate) { limits.streamBytesHard = Double(n) }
        if let n = try file.int("proxy_records_soft", rate) { limits.proxyRecordsSoft = Double(n) }
        if let n = try file.int("proxy_records_hard", rate) { limits.proxyRecordsHard = Double(n) }
        if let n = try file.int("proxy_bytes_soft", rate) { limits.proxyBytesSoft = Double(n) }
        if let n = try file.int("proxy_bytes_hard", rate) { limits.proxyBytesHard = Double(n) }
        let e = try file.int("ensemble", 1...64) ?? log.quorums.ensembleSize
        let qw = try file.int("write_quorum", 1...64) ?? log.quorums.writeQuorum
        let qa = try file.int("ack_quorum", 1...64) ?? log.quorums.ackQuorum
        guard let quorums = Quorums(ensembleSize: e, writeQuorum: qw, ackQuorum: qa) else {
            throw ConfigFile.Problem(message: "\(file.location("ensemble")): ensemble \(e), write_quorum \(qw), ack_quorum \(qa): "
                                     + "they must satisfy ensemble ≥ write_quorum ≥ ack_quorum ≥ 1")
        }
        log.quorums = quorums
        if let n = try file.int("segment_bytes_max", (1 << 20)...(1 << 40)) { log.segmentBytesMax = Int64(n) }
        if let n = try file.int("segment_age_s", 1...(30 * 86400)) { log.segmentAgeMax = .seconds(n) }
        if let n = try file.int("retention_hours", 0...(100 * 365 * 24)) { log.retentionAge = n == 0 ? nil : .seconds(n * 3600) }
        if let n = try file.int("ownership_lease_s", 2...600) { log.ownershipLeaseSeconds = n }
        if let c = file.string("compression") {
            switch c {
            case "none": log.compression = .none
            case "lz4": log.compression = .lz4
            default: throw file.problem("compression", allowed: "none, lz4")
            }
        }
    }

    /// The address written into the streams this proxy owns.
    public func address(port bound: Int) -> String { "\(advertisedHost ?? host):\(bound)" }
}
