import DLogMetadata
import DLogPKI
import DLogWire
import Foundation
import Logging
import NIOPosix

/// Everything in one process, data under one directory: the metadata role (embedded store), three bookies and
/// one proxy, each on its own port counted from `basePort`. For trying the system out and for tests; the
/// same code as the separate roles, so what works here works there.
public struct StandaloneSettings: Sendable {
    public var dataDirectory = "./data"
    public var host = "127.0.0.1"
    /// The metadata role's port; bookies use the next three, the proxy `basePort + 10`.
    public var basePort = 3180
    public var bookies = 3
    /// The admin socket's path (`dlogctl admin`); nil: /run/dlog/INSTANCE.sock when /run/dlog exists.
    public var adminSocket: String?
    /// TLS on every port, with a CA made on first start under DATA/tls (`StandaloneTLS`).
    public var tlsMode = TLSMode.off
    /// Prometheus metrics of every part (metadata, bookies, proxy) on this port; nil: none (the admin socket's
    /// `metrics` still shows them).
    public var metricsPort: Int?

    public init() {}

    public static let keys: Set<String> = ["role", "data_dir", "host", "base_port", "admin_socket", "log_level", "tls_mode",
                                           "metrics_port"]

    public mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem) {
        if let d = try file.nonEmpty("data_dir", allowed: "a directory") { dataDirectory = d }
        if let h = try file.nonEmpty("host", allowed: "an address or host name") { host = h }
        if let p = try file.int("base_port", 1...65_000) { basePort = p }
        if let a = try file.nonEmpty("admin_socket", allowed: "a socket path") { adminSocket = a }
        if let p = try file.int("metrics_port", 0...65535) { metricsPort = p }
        if let m = file.string("tls_mode") {
            guard let mode = TLSMode(rawValue: m) else { throw file.problem("tls_mode", allowed: "off, optional, required") }
            tlsMode = mode
        }
        if let named = file.string("role"), named != "standalone" {
            throw file.problem("role", allowed: "standalone (this file is for the standalone role)")
        }
    }

    public var metadataURI: String { "dlog://\(host):\(basePort)" }
    public var proxyPort: Int { basePort + 10 }
}

public enum StandaloneRole {
    public static func run(settings: StandaloneSettings, logger: Logger) -> Int32 {
        let termination = Termination()
        do {
            var storeConfiguration = EmbeddedStore.Configuration(directory: settings.dataDirectory + "/metadata")
            storeConfiguration.historyRevisions = 100_000
            let store = try EmbeddedStore(storeConfiguration) { failure in
                logger.critical("metadata database failed; exiting", metadata: ["error": "\(failure)"])
                exit(3)
            }
            if settings.tlsMode != .off,
               try StandaloneTLS.prepare(dataDirectory: settings.dataDirectory, host: settings.host) {
                logger.notice("made a CA and certificates for this standalone under \(settings.dataDirectory)/tls")
            }
            func tls(_ role: ClusterCA.Role) -> TLSSettings {
                StandaloneTLS.settings(mode: settings.tlsMode, dataDirectory: settings.dataDirectory, role: role)
            }
            let metadataTLS = tls(.metadata)
            let metadataIdentity = try metadataTLS.identity()
            // One registry for every part: the bookies' series carry a `bookie` label.
            let registry = RoleRegistry()
            let metadataServer = try MetadataServer(store: store, host: settings.host, port: settings.basePort,
                                                    tls: metadataTLS.server(metadataIdentity, logger: logger),
                                                    access: metadataTLS.enforcesAuthorization ? MetadataAccess() : nil,
                                                    metrics: registry.factory, logger: logger)
            do {
                _ = try runBlocking { try await Cluster(store: store).initialize() }
            } catch ClusterError.alreadyInitialized {
                // A standalone started before on this directory.
            }
            var bookies: [BookieRole.RunningBookie] = []
            // One event loop for the bookies' connections and the proxy's, both ends: an add the proxy sends is
            // read by its bookie on the same thread, and the answer comes back the same way, with no wake-up of
            // another thread in between. Through the proxy on two cores, against an event loop per bookie and
            // one for the proxy: 1 x 1 p50 0.32-0.33 ms against 0.37 and 17 % less CPU; 4 x 32 34-36k writes/s
            // against 31-35k; 100 x 100 61k against 56k; context switches a half to two thirds fewer. Tailing
            // readers wait their turn on that loop: at 4 x 32 their p50 is 0.6-0.9 ms against 0.2-0.3 ms, their
            // p99 the same (1.7-2.7 ms).
            let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            for index in 0..<settings.bookies {
                var bookie = BookieSettings()
                let dir = settings.dataDirectory + "/bookie-\(index)"
                bookie.journalDirectories = [dir + "/journal"]
                bookie.ledgerDirectories = [dir + "/ledgers"]
                bookie.host = settings.host
                bookie.port = settings.basePort + 1 + index
                bookie.metadata = settings.metadataURI
                bookie.bookieID = "bookie-\(index)"
                // One machine, one disk: smaller journals than a dedicated bookie's, and no device warning. The
                // journal holds twice the write cache, so the checkpoint a full cache asks for ends while the
                // journal still has free files (with 4 files the journal ran out first and held every add for the
                // checkpoint's 100-250 ms; 100 streams x 100 writers: p99.9 84-150 ms with 4, 10-23 ms with 8).
                bookie.allowSharedDevice = true
                bookie.journalFileBytes = 16 << 20
                bookie.journalFilesMax = 8
                // Three journal writers share the cores with everything that feeds them: a writer polling for
                // its next add only takes a core from the threads bringing it. Without the poll, 1 stream x 1
                // writer through the proxy: p50 0.35-0.44 ms against 0.44-0.55; 4 x 32: 31-33k writes/s against
                // 26-30k (alternating rounds on 2 cores).
                bookie.journalSpinMicros = 0
                bookie.writeCacheBytes = 64 << 20
                bookie.tls = tls(.bookie)
                bookies.append(try BookieRole.start(settings: bookie, truncateCorrupt: false,
                                                    logger: Logger(label: "dlogd.standalone.bookie-\(index)"),
                                                    registry: registry, loops: loops))
            }
            var proxySettings = ProxySettings()
            proxySettings.metadata = settings.metadataURI
            proxySettings.host = settings.host
            proxySettings.port = settings.proxyPort
            proxySettings.proxyID = "standalone"
            proxySettings.tls = tls(.proxy)
            let proxy = try ProxyRole.start(settings: proxySettings, logger: Logger(label: "dlogd.standalone.proxy"),
                                            registry: registry, loops: loops)
            let parts = bookies
            registry.showing {
                PrometheusText.merge([
                    RoleMetrics.metadata((try? runBlocking { await store.stats() }) ?? EmbeddedStats(),
                                         permissionDenied: metadataServer.permissionDenied.value),
                    RoleMetrics.proxy(proxy.service, permissionDenied: proxy.access?.denied.load(ordering: .relaxed) ?? 0),
                ] + parts.map { BookieMetrics.render($0.bookie, recovery: $0.recovery, scrubber: $0.scrubber,
                                                    membership: $0.membership, labels: ["bookie": $0.id]) })
            }
            let metrics = AdminCommands.metrics(port: settings.metricsPort, host: settings.host,
                                                tls: tls(.metadata).server(metadataIdentity, logger: logger), logger: logger,
                                                render: registry.render)
            // Every part is found at the one port; a bookie's samples by their `bookie` label.
            let announcement = metrics.flatMap { served in
                let address = MetricsAnnouncement.address(host: settings.host, advertised: nil, port: served.port)
                let tls = settings.tlsMode != .off
                return MetricsAnnouncement.start(
                    [MetricsEndpoint(role: "metadata", id: "\(settings.host):\(settings.basePort)", address: address, tls: tls),
                     MetricsEndpoint(role: "proxy", id: proxySettings.proxyID ?? proxy.address, address: address, tls: tls)]
                        + bookies.map { MetricsEndpoint(role: "bookie", id: $0.id, address: address, tls: tls, labels: ["bookie": $0.id]) },
                    cluster: Cluster(store: store), logger: logger)
            }
            FileHandle.standardOutput.write(Data(("dlogd standalone: metadata \(settings.metadataURI), bookies "
                + bookies.map { "\(settings.host):\($0.port)" }.joined(separator: " ")
                + ", data under \(settings.dataDirectory)\n").utf8))
            if settings.tlsMode != .off {
                let dir = settings.dataDirectory + "/tls"
                FileHandle.standardOutput.write(Data(("dlogd standalone: TLS \(settings.tlsMode.rawValue); clients use "
                    + "--tls-ca \(dir)/ca.crt --tls-cert \(dir)/admin.crt --tls-key \(dir)/admin.key\n").utf8))
            }
            // One socket for the whole process: the proxy's and the metadata store's commands.
            let admin = AdminCommands.open(settings.adminSocket, logger: logger)
            if let admin {
                let bookieAddresses = bookies.map { "\(settings.host):\($0.port)" }
                AdminCommands.common(admin, role: "standalone", config: AdminCommands.describe(settings)) {
                    ["metadata": settings.metadataURI, "bookies": bookieAddresses,
                     "proxy": "\(settings.host):\(proxy.port)", "streams_owned": proxy.service.ownedStreams.count]
                }
                AdminCommands.metadata(admin, store)
                AdminCommands.proxy(admin, proxy.service)
                AdminCommands.metrics(admin, registry)
            }
            RoleLifecycle.announceReady(role: "standalone proxy", host: settings.host, port: proxy.port)
            RoleLifecycle.waitForTermination(termination, logger: logger)
            admin?.stop()
            if let announcement { _ = try? runBlocking { await announcement.stop() } }
            metrics?.close()
            proxy.stop()
            for bookie in bookies { bookie.stop() }
            try? loops.syncShutdownGracefully()
            metadataServer.stopAccepting()
            store.shutdownAndWait()
            metadataServer.close()
            return 0
        } catch {
            return RoleLifecycle.startFailed(role: "standalone", error, logger: logger)
        }
    }
}
