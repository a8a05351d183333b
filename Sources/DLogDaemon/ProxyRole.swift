import DistributedLog
import DLogLedger
import DLogMetadata
import DLogProxy
import Foundation
import Logging

/// Runs the proxy role until SIGTERM/SIGINT, then drains: takes no new streams, flushes and releases the
/// owned ones (another proxy takes them over), leaves the registry, exits.
public enum ProxyRole {
    /// Starts everything and blocks. Returns the process exit code: 0 after a clean stop, 2 when it cannot start.
    public static func run(settings: ProxySettings, logger: Logger) -> Int32 {
        let termination = Termination()
        do {
            let store = try MetadataURI.connect(settings.metadata)
            let pool = BookiePool(cluster: Cluster(store: store), logger: logger)
            let namespace = Namespace(pool: pool, options: settings.log)
            // Bind first: the address goes into the registration and into every stream this proxy owns.
            let placeholder = ProxyService(namespace: namespace, settings: .init(id: "-", address: "-"), logger: logger)
            let probe = try ProxyServer(service: placeholder, host: settings.host, port: settings.port, logger: logger)
            let port = probe.localAddress?.port ?? settings.port
            probe.close()
            let address = settings.address(port: port)
            var service = ProxyService.Settings(id: settings.proxyID ?? address, address: address)
            service.streamsMax = settings.streamsMax
            service.limits = settings.limits
            let proxy = ProxyService(namespace: namespace, settings: service, logger: logger)
            let server = try ProxyServer(service: proxy, host: settings.host, port: port, threads: settings.ioThreads, logger: logger)
            try runBlocking { try await proxy.register() }
            logger.info("proxy serving", metadata: ["address": "\(address)", "metadata": "\(settings.metadata)"])
            RoleLifecycle.announceReady(role: "proxy", host: settings.host, port: port)
            RoleLifecycle.waitForTermination(termination)
            logger.info("stopping: draining owned streams")
            server.stopAccepting()
            _ = try? runBlocking { await proxy.drain() }
            server.close()
            _ = try? runBlocking {
                await pool.shutdown()
                await store.shutdown()
            }
            return 0
        } catch {
            return RoleLifecycle.startFailed(role: "proxy role", error, logger: logger)
        }
    }
}
