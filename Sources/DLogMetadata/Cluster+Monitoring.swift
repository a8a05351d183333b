import Foundation

/// Where one part of the cluster (a bookie, a proxy, a metadata role) serves its Prometheus metrics, published
/// under `/monitoring/ROLE/ID` by every role with a metrics port, bound to a lease of the process that serves
/// them. `dlogctl top` reads these to find what to scrape; a part without a metrics port has no record.
public struct MetricsEndpoint: Codable, Hashable, Sendable {
    /// "bookie", "proxy" or "metadata".
    public var role: String
    /// The bookie's id, the proxy's id, or the metadata role's address.
    public var id: String
    /// host:port of the metrics port (`GET /metrics`).
    public var address: String
    /// The port speaks HTTPS (the role's `tls_mode` is not `off`).
    public var tls: Bool
    /// Labels that tell this part's samples apart where several parts share one port (a standalone's bookies
    /// carry `bookie`); empty when the port is this part's alone.
    public var labels: [String: String]

    public init(role: String, id: String, address: String, tls: Bool, labels: [String: String] = [:]) {
        self.role = role
        self.id = id
        self.address = address
        self.tls = tls
        self.labels = labels
    }

    public static let prefix = "/monitoring/"
    public var key: String { Self.prefix + role + "/" + id }
}

extension Cluster {
    /// Puts `endpoints` under `lease`, all in one transaction, replacing what was there.
    public func publish(_ endpoints: [MetricsEndpoint], lease: LeaseID) async throws {
        _ = try await store.commit(Transaction(operations: endpoints.map { .put(key: $0.key, value: Self.encode($0), lease: lease) }))
    }

    /// Every published metrics endpoint, in key order (role, then id).
    public func metricsEndpoints() async throws -> [MetricsEndpoint] {
        try await store.list(prefix: MetricsEndpoint.prefix).items.compactMap { item in
            // A record this version cannot read is skipped, not fatal: a newer role may add fields we ignore
            // anyway, and an unreadable one only costs its row in `dlogctl top`.
            try? JSONDecoder().decode(MetricsEndpoint.self, from: Data(item.value))
        }
    }
}
