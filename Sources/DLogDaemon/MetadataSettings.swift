import DLogMetadata

/// Every setting of the metadata role, with its default, the key that sets it, and its check.
public struct MetadataSettings: Sendable {
    public var dataDirectory = "./data/metadata"
    public var host = "127.0.0.1"
    public var port = 3180
    /// Revisions of change history kept so watchers can resume after a disconnect.
    public var historyRevisions = 100_000
    public var ioThreads = 1
    /// The admin socket's path (`dlogctl admin`); nil: /run/dlog/INSTANCE.sock when /run/dlog exists.
    public var adminSocket: String?
    /// Prometheus metrics over HTTP on this port (`host`); nil: none.
    public var metricsPort: Int?
    /// TLS on the port and on the role's own connections (docs/security.md).
    public var tls = TLSSettings()
    /// What the port lets each client hold, and how long.
    public var connections = ConnectionSettings()
    /// Application principals that may write metadata, with TLS required (docs/security.md).
    public var metadataWriters: [String] = []

    public init() {}

    public static let keys: Set<String> = (["data_dir", "host", "port", "history_revisions", "io_threads", "admin_socket", "role",
                                           "metrics_port", "log_level"] as Set<String>).union(TLSSettings.keys).union(ConnectionSettings.keys).union(["metadata_writers"])

    public mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem) {
        if let d = try file.nonEmpty("data_dir", allowed: "a directory") { dataDirectory = d }
        if let h = try file.nonEmpty("host", allowed: "an address or host name") { host = h }
        if let p = try file.int("port", 0...65535) { port = p }
        if let n = try file.int("history_revisions", 1_000...100_000_000) { historyRevisions = n }
        if let n = try file.int("io_threads", 1...64) { ioThreads = n }
        if let a = try file.nonEmpty("admin_socket", allowed: "a socket path") { adminSocket = a }
        if let p = try file.int("metrics_port", 0...65535) { metricsPort = p }
        try tls.apply(file)
        try connections.apply(file)
        if let names = try file.list("metadata_writers", allowed: "a comma-separated list of principal names") { metadataWriters = names }
        if let named = file.string("role"), named != "metadata" {
            throw file.problem("role", allowed: "metadata (this is the metadata role's config; run `dlogd --config FILE` to start the role a file names)")
        }
    }

    public var storeConfiguration: EmbeddedStore.Configuration {
        var configuration = EmbeddedStore.Configuration(directory: dataDirectory)
        configuration.historyRevisions = Int64(historyRevisions)
        return configuration
    }
}
