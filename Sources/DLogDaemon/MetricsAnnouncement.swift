import DLogMetadata
import Logging
import Synchronization

/// Keeps a process's `MetricsEndpoint` records in metadata while it runs, so `dlogctl top` finds every metrics
/// port without being told. The records live under a lease of their own (`ttlSeconds`): a process that dies
/// drops out within the TTL, one that stops revokes the lease and drops out at once. Metadata being away is
/// never fatal: the role serves on, and publishes again (with a new lease) once the store answers.
final class MetricsAnnouncement: Sendable {
    static let ttlSeconds = 10

    private let endpoints: [MetricsEndpoint]
    private let cluster: Cluster
    private let logger: Logger
    private let lease = Mutex<LeaseID?>(nil)
    private let task = Mutex<Task<Void, Never>?>(nil)

    private init(_ endpoints: [MetricsEndpoint], cluster: Cluster, logger: Logger) {
        self.endpoints = endpoints
        self.cluster = cluster
        self.logger = logger
    }

    /// Starts publishing `endpoints`; nil when there is nothing to publish or no metadata store to publish in.
    static func start(_ endpoints: [MetricsEndpoint], cluster: Cluster?, logger: Logger) -> MetricsAnnouncement? {
        guard let cluster, !endpoints.isEmpty else { return nil }
        let announcement = MetricsAnnouncement(endpoints, cluster: cluster, logger: logger)
        let task = Task { await announcement.upkeep() }
        announcement.task.withLock { $0 = task }
        return announcement
    }

    /// Publishes under a fresh lease, keeps it alive at a third of its TTL, and starts over when it is lost.
    private func upkeep() async {
        var current: LeaseID?
        var complained = false
        while !Task.isCancelled {
            do {
                if let current {
                    _ = try await cluster.store.keepAlive(current)
                } else {
                    let granted = try await cluster.store.grantLease(ttlSeconds: Self.ttlSeconds)
                    lease.withLock { $0 = granted.id }
                    current = granted.id
                    try await cluster.publish(endpoints, lease: granted.id)
                    if complained { logger.info("metrics endpoint published again") }
                    complained = false
                }
            } catch {
                // An expired lease took the records with it: the next round grants a new one and puts them back.
                current = nil
                if !complained {
                    logger.warning("could not publish the metrics endpoint in metadata; retrying", metadata: ["error": "\(error)"])
                    complained = true
                }
            }
            try? await Task.sleep(for: .seconds(current == nil ? 1 : Self.ttlSeconds / 3))
        }
    }

    /// Stops the upkeep and revokes the lease, so the records go at once.
    func stop() async {
        let running = task.withLock { $0 }
        running?.cancel()
        await running?.value
        if let lease = lease.withLock({ $0 }) { try? await cluster.store.revoke(lease) }
    }

    /// Where a metrics port on `host` is reached from elsewhere: a wildcard listen address says nothing, so the
    /// host the role advertises for its own port stands in.
    static func address(host: String, advertised: String?, port: Int) -> String {
        let reachable = advertised ?? host
        return (reachable.contains(":") ? "[\(reachable)]" : reachable) + ":\(port)"
    }
}
