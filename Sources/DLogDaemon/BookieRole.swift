import CoreMetrics
import CSystemd
import DLogBookie
import DLogIO
import DLogMetadata
import DLogWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Runs the bookie role until SIGTERM/SIGINT or a journal failure.
public enum BookieRole {
    /// Starts everything and blocks. Returns the process exit code.
    public static func run(settings: BookieSettings, truncateCorrupt: Bool, config: String? = nil, logger: Logger) -> Int32 {
        let termination = Termination()
        let running: RunningBookie
        do {
            running = try start(settings: settings, truncateCorrupt: truncateCorrupt, logger: logger, registry: nil)
        } catch let error as MetadataUnreachable {
            // Exit code 4: a temporary failure systemd restarts (2 means the configuration is wrong).
            logger.critical("metadata store unreachable; giving up for now", metadata: ["error": "\(error.cause)"])
            FileHandle.standardError.write(Data("dlogd: \(error.cause)\n".utf8))
            return 4
        } catch {
            return RoleLifecycle.startFailed(role: "bookie", error, logger: logger)
        }
        let reload = Reload(config: config, logger: logger) { text in
            // The whole file is checked as at start; only the log level and the disk thresholds change.
            let file = try ConfigFile.parse(text, path: config ?? "", knownKeys: BookieSettings.keys)
            var fresh = BookieSettings()
            try fresh.apply(file)
            try fresh.check()
            try Reload.applyLogLevel(file)
            running.bookie.setDiskThresholds(high: fresh.diskUsageThreshold, low: fresh.diskUsageLowWater)
            try TLSSettings.reload(running.tls, logger: logger)
        }
        RoleLifecycle.announceReady(role: "bookie", host: settings.host, port: running.port)
        RoleLifecycle.waitForTermination(termination, logger: logger)
        _ = reload
        running.stop()
        return 0
    }

    /// The metadata store did not answer for the whole patience at start.
    struct MetadataUnreachable: Error {
        var cause: MetadataError
    }

    /// A started bookie: its port, and how to stop it.
    public struct RunningBookie: Sendable {
        public let port: Int
        /// The bookie's id (its label in a standalone's metrics).
        let id: String
        let bookie: Bookie
        let server: BookieServer
        let membership: BookieMembership?
        let recovery: RecoveryService?
        let scrubber: Scrubber
        let admin: AdminSocket?
        let watchdog: Watchdog
        let metrics: MetricsServer?
        let announcement: MetricsAnnouncement?
        /// Read again on SIGHUP.
        let tls: TLSIdentity?
        let logger: Logger

        public func stop() {
            watchdog.stop()
            if let announcement { _ = try? runBlocking { await announcement.stop() } }
            metrics?.close()
            admin?.stop()
            logger.info("stopping: deregistering, flushing journal, checkpointing, closing server")
            scrubber.stop()
            // Healing stops first: its lease goes, so another bookie's worker redoes a ledger this one held.
            if let recovery { _ = try? runBlocking { await recovery.stop() } }
            // Leave the registry first, so clients stop choosing this bookie while it drains.
            if let membership { _ = try? runBlocking { await membership.stop() } }
            // The journal drains first, while the event loops still run to deliver its acknowledgements;
            // requests that need the journal (adds, fences, WRITE_LAC, deletes) get SHUTTING_DOWN meanwhile.
            bookie.stop()
            server.close()
        }
    }

    /// Starts a bookie (and its membership in the cluster, with a metadata store) and returns at once.
    /// With `registry` (a standalone's, shared by its parts), the bookie records into it under a `bookie` label
    /// and the caller renders it; without, the bookie has a registry of its own.
    static func start(settings: BookieSettings, truncateCorrupt: Bool, logger: Logger,
                      registry shared: RoleRegistry?,
                      loops: MultiThreadedEventLoopGroup? = nil) throws -> RunningBookie {
        try settings.check()
        let disks = try Cookies.verifyOrCreate(journal: settings.journalDirectories, ledger: settings.ledgerDirectories)
        let bookieID = BookieID(settings.bookieID ?? settings.advertisedAddress(port: settings.port))
        let tls = try settings.tls.identity()
        let cluster = try settings.metadata.map { uri in Cluster(store: try MetadataURI.connect(uri, tls: tls)) }
        var clusterInstance = ""
        if let cluster {
            do {
                clusterInstance = try runBlocking {
                    try await BookieMembership.verifyCookie(cluster: cluster, bookie: bookieID, disks: disks,
                                                            settings: settings, patience: .seconds(60), logger: logger)
                }
            } catch let error as MetadataError where error.isRetryable {
                throw MetadataUnreachable(cause: error)
            }
        }
        for (j, l) in Cookies.sharedDevices(journal: settings.journalDirectories, ledger: settings.ledgerDirectories) {
            let message: Logger.Message = "journal dir \(j) is on the same device as ledger dir \(l); put them on separate devices for latency, or set allow_shared_device = true"
            if settings.allowSharedDevice { logger.debug(message) } else { logger.warning(message) }
        }
        var settings = settings
        let decision = try EngineSelector().decide(settings.journalEngine)
        settings.resolveJournalSync(for: decision.engine)
        if settings.journalSync == .dsync, let refusal = directIORefusal(settings.journalDirectories) {
            logger.warning("journal_sync = dsync needs O_DIRECT, which \(refusal); using fdatasync")
            settings.journalSync = .fdatasync
        }
        // One line says which engine and, under auto, why each one before it was refused: in the message itself,
        // so that `journalctl -g 'journal engine chosen'` shows it (the fields are for filtering).
        let chosen = "journal engine chosen: \(decision.engine.rawValue), sync \(settings.journalSync.rawValue)"
        let fields: Logger.Metadata = ["engine": "\(decision.engine.rawValue)", "sync": "\(settings.journalSync.rawValue)"]
        if let reason = decision.fallbackReason {
            logger.warning("\(chosen), after refusals: \(reason)", metadata: fields.merging(["reason": "\(reason)"]) { $1 })
        } else {
            logger.info("\(chosen)", metadata: fields)
        }
        let registry = shared ?? RoleRegistry()
        var configuration = settings.bookieConfiguration(engine: decision.engine, truncateCorrupt: truncateCorrupt)
        let recording: any MetricsFactory = settings.latencyHistograms ? registry.factory : NOOPMetricsHandler.instance
        configuration.metrics = recording
        if shared != nil { configuration.metricsDimensions = [("bookie", bookieID.rawValue)] }
        let bookie = try Bookie(configuration: configuration, logger: logger)
        // A long replay (a big journal after a crash) says how far it is, in the log and in `systemctl status`.
        try bookie.start(progress: { line in
            logger.info("\(line)")
            _ = sd_notify(0, "STATUS=\(line)")
        }) { failure in
            logger.critical("journal failed; no more adds are acknowledged; exiting", metadata: ["error": "\(failure)"])
            exit(3)
        }
        let server = try BookieServer(bookie: bookie, host: settings.host, port: settings.port,
                                      maxFrameBytes: settings.maxFrameBytes, threads: settings.ioThreads, group: loops,
                                      tls: settings.tls.server(tls, logger: logger),
                                      budget: settings.connections.budget(logger: logger),
                                      access: settings.tls.enforcesAuthorization ? BookieAccess(ledgerClients: Set(settings.ledgerClients)) : nil,
                                      logger: logger)
        let port = server.localAddress?.port ?? settings.port
        var membership: BookieMembership?
        if let cluster {
            let registration = BookieRegistration(id: bookieID, address: settings.advertisedAddress(port: port), rack: settings.rack,
                                                  readOnly: bookie.isReadOnly, disks: [],
                                                  startedAt: Int64(Date().timeIntervalSince1970 * 1000))
            let member = BookieMembership(cluster: cluster, clusterInstance: clusterInstance, bookie: bookie,
                                          registration: registration,
                                          settings: settings, logger: logger)
            do {
                try runBlocking { try await member.start() }
            } catch {
                bookie.stop()
                server.close()
                throw error
            }
            membership = member
        }
        var recovery: RecoveryService?
        if let uri = settings.metadata {
            do {
                let service = try RecoveryService(me: bookieID, bookie: bookie, uri: uri, settings: settings, tls: tls,
                                                  metrics: recording,
                                              logger: logger)
                service.start()
                recovery = service
            } catch {
                logger.error("healing not started: could not connect to metadata", metadata: ["error": "\(error)"])
            }
        }
        logger.info("bookie serving", metadata: ["address": "\(settings.host):\(port)", "bookie_id": "\(bookieID)"])
        if cluster == nil {
            // A bookie alone is what benchmarks want, but a service started from a config without `metadata`
            // would otherwise serve nobody's ledgers without a word.
            logger.warning("running outside any cluster: no metadata configured; no proxy or client will find this bookie. Set metadata = dlog://HOST:3180 in its config (or --metadata) to join a cluster")
        }
        let scrubber = Scrubber(bookie: bookie, settings: settings, logger: logger) { [recovery] damaged in
            recovery?.markDamaged(damaged)
        }
        scrubber.start()
        let admin = AdminCommands.open(settings.adminSocket, logger: logger)
        if let admin {
            let address = "\(settings.host):\(port)", registered = membership != nil
            AdminCommands.common(admin, role: "bookie", config: AdminCommands.describe(settings)) {
                ["state": bookie.isReadOnly ? "read-only" : "writable", "bookie_id": bookieID.rawValue,
                 "address": address, "registered": registered]
            }
            AdminCommands.bookie(admin, bookie)
            if shared == nil { AdminCommands.metrics(admin, registry) }
            BookieAdminCommands.register(admin, bookie, settings: settings, membership: membership)
            BookieAdminCommands.register(admin, scrubber)
        }
        let watchdog = bookieWatchdog(bookie, server) { [recovery] in
            [recovery?.statusLine, scrubber.status.running ? "scrubbing" : nil].compactMap { $0 }.joined(separator: ", ")
        }
        watchdog.start(logger: logger)
        if shared == nil {
            registry.showing { [recovery, membership] in
                BookieMetrics.render(bookie, recovery: recovery, scrubber: scrubber, membership: membership)
            }
        }
        let metrics = AdminCommands.metrics(port: settings.metricsPort, host: settings.host,
                                            tls: settings.tls.server(tls, logger: logger), logger: logger, render: registry.render)
        let announcement = metrics.flatMap { served in
            MetricsAnnouncement.start([MetricsEndpoint(role: "bookie", id: bookieID.rawValue,
                                                       address: MetricsAnnouncement.address(host: settings.host, advertised: settings.advertisedHost,
                                                                                            port: served.port),
                                                       tls: settings.tls.mode != .off)],
                                      cluster: cluster, logger: logger)
        }
        return RunningBookie(port: port, id: bookieID.rawValue, bookie: bookie, server: server, membership: membership, recovery: recovery,
                             scrubber: scrubber, admin: admin, watchdog: watchdog, metrics: metrics, announcement: announcement,
                             tls: tls, logger: logger)
    }

    /// The bookie's health for systemd: its journals make progress when work waits, and its event loops run
    /// tasks; the status line says writable or read-only, adds/s and the sync p99.
    static func bookieWatchdog(_ bookie: Bookie, _ server: BookieServer,
                               healing: @escaping @Sendable () -> String = { "" }) -> Watchdog {
        let progress = Mutex(JournalProgress())
        let statusLine = Mutex(BookieStatusLine())
        return Watchdog(probes: [
            { progress.withLock { $0.check(bookie.journals.map(\.stats)) } },
            { server.eventLoopsRespond(within: .seconds(1)) ? nil : "the network event loops did not run a task within 1 s" },
        ], status: {
            let line = statusLine.withLock {
                $0.line(readOnly: bookie.isReadOnly, checkpointFailures: bookie.checkpointFailuresInARow,
                        bookie.journals.map(\.stats))
            }
            let extra = healing()
            return extra.isEmpty ? line : line + ", " + extra
        })
    }

    /// Why O_DIRECT cannot be used in one of the directories (tmpfs and some FUSE file systems refuse it).
    static func directIORefusal(_ dirs: [String]) -> String? {
        for dir in dirs {
            let probe = dir + "/.direct-io-probe"
            do {
                try FileSystem.makeDirectory(dir)
                let f = try File.open(probe, [.create, .direct])
                f.close()
                try? FileSystem.remove(probe)
            } catch {
                try? FileSystem.remove(probe)
                return "\(dir) does not allow (\(error))"
            }
        }
        return nil
    }
}
