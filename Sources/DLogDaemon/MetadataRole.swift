import CSystemd
import DLogMetadata
import DLogWire
import Foundation
import Logging

/// Runs the metadata role (the embedded store behind the common protocol) until SIGTERM/SIGINT or a
/// database failure.
public enum MetadataRole {
    /// Starts everything and blocks. Returns the process exit code: 0 after a clean stop, 2 when it cannot
    /// start, 3 when the database failed while serving.
    public static func run(settings: MetadataSettings, config: String? = nil, logger: Logger) -> Int32 {
        let termination = Termination()
        do {
            let store = try EmbeddedStore(settings.storeConfiguration) { failure in
                logger.critical("metadata database failed; nothing more is acknowledged; exiting",
                                metadata: ["error": "\(failure)"])
                exit(3)
            }
            let tls = try settings.tls.identity()
            let registry = RoleRegistry()
            let server = try MetadataServer(store: store, host: settings.host, port: settings.port,
                                            threads: settings.ioThreads, tls: settings.tls.server(tls, logger: logger),
                                            budget: settings.connections.budget(logger: logger),
                                            access: settings.tls.enforcesAuthorization
                                                ? MetadataAccess(writers: Set(settings.metadataWriters)) : nil,
                                            metrics: registry.factory, logger: logger)
            let port = server.localAddress?.port ?? settings.port
            logger.info("metadata role serving", metadata: ["address": "\(settings.host):\(port)",
                                                            "data_dir": "\(settings.dataDirectory)"])
            let admin = AdminCommands.open(settings.adminSocket, logger: logger)
            if let admin {
                AdminCommands.common(admin, role: "metadata", config: AdminCommands.describe(settings)) {
                    ["address": "\(settings.host):\(port)", "data_dir": settings.dataDirectory]
                }
                AdminCommands.metadata(admin, store)
            }
            registry.showing {
                RoleMetrics.metadata((try? runBlocking { await store.stats() }) ?? EmbeddedStats(),
                                     permissionDenied: server.permissionDenied.value)
            }
            if let admin { AdminCommands.metrics(admin, registry) }
            let metrics = AdminCommands.metrics(port: settings.metricsPort, host: settings.host,
                                                tls: settings.tls.server(tls, logger: logger), logger: logger, render: registry.render)
            let announcement = metrics.flatMap { served in
                MetricsAnnouncement.start([MetricsEndpoint(role: "metadata", id: "\(settings.host):\(port)",
                                                           address: MetricsAnnouncement.address(host: settings.host, advertised: nil,
                                                                                                port: served.port),
                                                           tls: settings.tls.mode != .off)],
                                          cluster: Cluster(store: store), logger: logger)
            }
            let reload = Reload(config: config, logger: logger) { text in
                try Reload.applyLogLevel(try ConfigFile.parse(text, path: config ?? "", knownKeys: MetadataSettings.keys))
                try TLSSettings.reload(tls, logger: logger)
            }
            RoleLifecycle.announceReady(role: "metadata", host: settings.host, port: port)
            let watchdog = RoleWatchdogs.metadata(server, store)
            watchdog.start(logger: logger)
            RoleLifecycle.waitForTermination(termination, logger: logger)
            watchdog.stop()
            admin?.stop()
            if let announcement { _ = try? runBlocking { await announcement.stop() } }
            metrics?.close()
            _ = reload
            logger.info("stopping: closing connections, then the database")
            // Answers to requests already queued still reach their connections: the event loops stop last.
            server.stopAccepting()
            store.shutdownAndWait()
            server.close()
            return 0
        } catch {
            return RoleLifecycle.startFailed(role: "metadata role", error, logger: logger)
        }
    }
}
