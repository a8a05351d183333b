import DistributedLog
import DLogLedger
import DLogMetadata
import DLogProxy
import DLogWire
import Foundation
import Logging
import NIOPosix

/// Runs the proxy role until SIGTERM/SIGINT, then drains: takes no new streams, flushes and releases the
/// owned ones (another proxy takes them over), leaves the registry, exits.
public enum ProxyRole {
    /// Starts everything and blocks. Returns the process exit code: 0 after a clean stop, 2 when it cannot start.
    public static func run(settings: ProxySettings, config: String? = nil, logger: Logger) -> Int32 {
        let termination = Termination()
        let running: RunningProxy
        do {
            running = try start(settings: settings, logger: logger)
        } catch {
            return RoleLifecycle.startFailed(role: "proxy role", error, logger: logger)
        }
        let reload = Reload(config: config, logger: logger) { text in
            let file = try ConfigFile.parse(text, path: config ?? "", knownKeys: ProxySettings.keys)
            var fresh = ProxySettings()
            try fresh.apply(file)
            try Reload.applyLogLevel(file)
            running.service.setLimits(fresh.limits)
            try TLSSettings.reload(running.tls, logger: logger)
        }
        RoleLifecycle.announceReady(role: "proxy", host: settings.host, port: running.port)
        RoleLifecycle.waitForTermination(termination, logger: logger)
        _ = reload
        running.stop()
        return 0
    }

    /// A started proxy: its port, and how to drain and stop it.
    public struct RunningProxy: Sendable {
        public let port: Int
        public let address: String
        public let service: ProxyService
        let server: ProxyServer
        let pool: BookiePool
        let loops: MultiThreadedEventLoopGroup
        /// Whether `stop()` stops `loops`: not when the caller lent them.
        let ownsLoops: Bool
        let store: any MetadataStore
        let admin: AdminSocket?
        let metrics: MetricsServer?
        let announcement: MetricsAnnouncement?
        let watchdog: Watchdog
        let logger: Logger
        /// Read again on SIGHUP.
        let tls: TLSIdentity?
        let access: ProxyAccess?

        public func stop() {
            watchdog.stop()
            access?.stop()
            admin?.stop()
            if let announcement { _ = try? runBlocking { await announcement.stop() } }
            metrics?.close()
            logger.info("stopping: draining owned streams")
            server.stopAccepting()
            _ = try? runBlocking { await service.drain() }
            server.close()
            _ = try? runBlocking {
                await pool.shutdown()
                await store.shutdown()
                if ownsLoops { try? await loops.shutdownGracefully() }
            }
        }
    }

    /// With `registry` (a standalone's, shared by its parts) the proxy records into it and the caller renders
    /// it; without, the proxy has a registry of its own.
    /// `lent`: event loops the caller shares with the proxy and stops itself (a standalone's, shared with its bookies).
    static func start(settings: ProxySettings, logger: Logger, registry shared: RoleRegistry? = nil,
                      loops lent: MultiThreadedEventLoopGroup? = nil) throws -> RunningProxy {
        let tls = try settings.tls.identity()
        let store = try MetadataURI.connect(settings.metadata, tls: tls)
        // Clients' connections and the bookie connections their writes go out on share the event loops: a
        // write is then forwarded and answered on one thread, not handed between two each way.
        let loops = lent ?? MultiThreadedEventLoopGroup(numberOfThreads: settings.ioThreads)
        let registry = shared ?? RoleRegistry()
        var poolOptions = BookiePool.Options()
        poolOptions.eventLoopGroup = loops
        poolOptions.tls = tls
        poolOptions.metrics = registry.factory
        let pool = BookiePool(cluster: Cluster(store: store), options: poolOptions, logger: logger)
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
        service.metrics = registry.factory
        let proxy = ProxyService(namespace: namespace, settings: service, logger: logger)
        // With TLS required, every request is checked against the per-log rights kept in metadata.
        let access = settings.tls.enforcesAuthorization ? ProxyAccess(store: store, logger: logger) : nil
        if let access { try runBlocking { try await access.start() } }
        let server = try ProxyServer(service: proxy, host: settings.host, port: port, group: loops,
                                     tls: settings.tls.server(tls, logger: logger),
                                     budget: settings.connections.budget(logger: logger), access: access, logger: logger)
        do {
            try runBlocking { try await proxy.register() }
        } catch {
            server.close()
            if lent == nil { try? loops.syncShutdownGracefully() }
            throw error
        }
        logger.info("proxy serving", metadata: ["address": "\(address)", "metadata": "\(settings.metadata)"])
        let admin = AdminCommands.open(settings.adminSocket, logger: logger)
        if let admin {
            AdminCommands.common(admin, role: "proxy", config: AdminCommands.describe(settings)) {
                ["address": address, "streams_owned": proxy.ownedStreams.count]
            }
            AdminCommands.proxy(admin, proxy)
        }
        if shared == nil {
            registry.showing { RoleMetrics.proxy(proxy, permissionDenied: access?.denied.load(ordering: .relaxed) ?? 0) }
            if let admin { AdminCommands.metrics(admin, registry) }
        }
        let metrics = AdminCommands.metrics(port: settings.metricsPort, host: settings.host,
                                            tls: settings.tls.server(tls, logger: logger), logger: logger, render: registry.render)
        let announcement = metrics.flatMap { served in
            MetricsAnnouncement.start([MetricsEndpoint(role: "proxy", id: service.id,
                                                       address: MetricsAnnouncement.address(host: settings.host, advertised: settings.advertisedHost,
                                                                                            port: served.port),
                                                       tls: settings.tls.mode != .off)],
                                      cluster: Cluster(store: store), logger: logger)
        }
        let watchdog = RoleWatchdogs.proxy(server, proxy)
        watchdog.start(logger: logger)
        return RunningProxy(port: port, address: address, service: proxy, server: server, pool: pool, loops: loops,
                            ownsLoops: lent == nil, store: store,
                            admin: admin, metrics: metrics, announcement: announcement, watchdog: watchdog, logger: logger, tls: tls,
                            access: access)
    }
}
