import CoreMetrics
import DLogBookie
import DLogLedger
import DLogMetadata
import DLogWire
import Foundation
import Logging
import Synchronization

/// A bookie's part in healing (docs/recovery.md): with `autorecovery` it stands for auditor and runs a
/// replication worker, both under one lease of their own (so the auditor's key and the worker's ledger locks
/// vanish with this process); always, it follows its own retirement: a drain turns the bookie read-only.
final class RecoveryService: Sendable {
    let me: BookieID
    let bookie: Bookie
    let store: any MetadataStore
    let pool: BookiePool
    let auditor: Auditor?
    let worker: ReplicationWorker?
    let ttlSeconds: Int
    let logger: Logger
    private let lease = Mutex<LeaseID?>(nil)
    /// A grant in flight, which concurrent callers share.
    private let granting = Mutex<Task<LeaseID, any Error>?>(nil)
    private let tasks = Mutex<[Task<Void, Never>]>([])

    /// `metrics`: where the recovery clients record (the role's registry).
    init(me: BookieID, bookie: Bookie, uri: String, settings: BookieSettings, tls: TLSIdentity?,
         metrics: (any MetricsFactory)? = nil, logger: Logger) throws {
        self.me = me
        self.bookie = bookie
        self.logger = logger
        ttlSeconds = settings.registrationTTLSeconds
        store = try MetadataURI.connect(uri, tls: tls)
        var poolOptions = BookiePool.Options()
        poolOptions.tls = tls
        poolOptions.metrics = metrics
        pool = BookiePool(cluster: Cluster(store: store), options: poolOptions, logger: logger)
        if settings.autorecovery {
            var audit = Auditor.Settings()
            audit.lostBookieGrace = .seconds(settings.lostBookieGraceSeconds)
            audit.auditInterval = .seconds(settings.auditIntervalSeconds)
            auditor = Auditor(me: me, pool: pool, settings: audit, logger: logger)
            var copy = ReplicationWorker.Settings()
            copy.rateBytesPerSecond = settings.replicationRateBytes
            copy.entriesInFlight = settings.replicationEntriesInFlight
            // Batches must fit other bookies' frames: bookies of a cluster are expected to share max_frame_bytes.
            copy.batchBytes = min(1 << 20, settings.maxFrameBytes / 2)
            copy.openLedgerGrace = .seconds(settings.openLedgerGraceSeconds)
            worker = ReplicationWorker(me: me, pool: pool, placement: EnsemblePlacement(policy: .rackAware),
                                       settings: copy, local: .init(id: me) { [bookie] in await bookie.serveInProcess($0) },
                                       logger: logger)
        } else {
            auditor = nil
            worker = nil
        }
    }

    func start() {
        let leaseSource: @Sendable () async throws -> LeaseID = { [self] in try await currentLease() }
        var started: [Task<Void, Never>] = [Task { [self] in await followRetirement() }]
        if let auditor { started.append(Task { await auditor.run(lease: leaseSource) }) }
        if let worker { started.append(Task { await worker.run(lease: leaseSource) }) }
        if auditor != nil || worker != nil { started.append(Task { [self] in await keepLeaseAlive() }) }
        tasks.withLock { $0 = started }
    }

    /// The lease the auditor key and the worker locks are bound to; granted anew when it expired. One grant at
    /// a time: the auditor and the worker asking at once must get the same lease, or the auditor's key would be
    /// bound to a lease nobody keeps alive.
    private func currentLease() async throws -> LeaseID {
        let (held, task) = lease.withLock { id -> (LeaseID?, Task<LeaseID, any Error>?) in
            if let id { return (id, nil) }
            return (nil, granting.withLock { pending in
                if let pending { return pending }
                let (store, ttl) = (store, ttlSeconds)
                let grant = Task { try await store.grantLease(ttlSeconds: ttl).id }
                pending = grant
                return grant
            })
        }
        if let held { return held }
        do {
            let id = try await task!.value
            return lease.withLock { current in
                granting.withLock { if $0 == task { $0 = nil } }
                if current == nil { current = id }
                return current!
            }
        } catch {
            granting.withLock { if $0 == task { $0 = nil } }
            throw error
        }
    }

    private func keepLeaseAlive() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(ttlSeconds) / 3)
            guard let id = lease.withLock({ $0 }) else { continue }
            do {
                _ = try await store.keepAlive(id)
            } catch MetadataError.leaseExpired {
                // Out of touch past the TTL: the auditor key and the locks are gone; the next round takes a new lease.
                logger.warning("recovery lease expired; taking a new one", metadata: ["lease": "\(id.rawValue)"])
                lease.withLock { if $0 == id { $0 = nil } }
            } catch {
                logger.warning("recovery lease keep-alive failed; retrying", metadata: ["error": "\(error)"])
            }
        }
    }

    /// A drain (`dlogctl bookie drain`) makes this bookie read-only until it is decommissioned or the drain
    /// is cancelled.
    private func followRetirement() async {
        while !Task.isCancelled {
            // Unreachable metadata changes nothing: the bookie stays as it was until the store answers.
            do {
                if let item = try await store.get(RecoveryKeys.retiring(me)) {
                    let record = try? JSONDecoder().decode(RetiringBookie.self, from: Data(item.value))
                    bookie.setDraining(record?.drain ?? false)
                } else if bookie.isDraining, try await store.get(ClusterKeys.cookie(me)) != nil {
                    // The record was removed while the cookie stays: the drain was called off. With the cookie
                    // gone too, the drain ended: the bookie stays read-only until it is stopped.
                    bookie.setDraining(false)
                }
            } catch {
                logger.debug("could not read this bookie's retirement record", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Marks entries scrub found damaged on this bookie, so a worker copies good replicas back to it.
    func markDamaged(_ damaged: [LedgerStorage.DamagedEntry]) {
        let cluster = Cluster(store: store), me = me, logger = logger
        Task {
            for (ledger, entries) in Dictionary(grouping: damaged, by: \.ledger) {
                do {
                    try await cluster.mark(ledger, [ReplicaMark(bookie: me, reason: .damaged,
                                                                entries: entries.map(\.entry.rawValue).sorted())])
                } catch {
                    logger.error("could not mark damaged entries for repair; the next scrub finds them again", metadata: [
                        "ledger_id": "\(ledger.rawValue)", "error": "\(error)"])
                }
            }
        }
    }

    /// What the bookie's status line and admin command say about healing.
    var statusLine: String? {
        guard let worker else { return nil }
        let totals = worker.totals
        guard let ledger = totals.ledger else { return nil }
        return "copying ledger \(ledger)"
    }

    func stop() async {
        for task in tasks.withLock({ $0 }) { task.cancel() }
        for task in tasks.withLock({ $0 }) { await task.value }
        if let id = lease.withLock({ current in defer { current = nil }; return current }) {
            try? await store.revoke(id)
        }
        await pool.shutdown()
        await store.shutdown()
    }
}
