import DLogBookie
import DLogIO
import DLogMetadata
import DLogWire
import Foundation
import Logging
import Synchronization

/// A bookie's life in the cluster: its cookie is checked before it serves; while it serves it is registered
/// under a lease (moving between writable and read-only with its state); ledgers that metadata no longer
/// has are deleted from its disks (`BookieMembership+Garbage.swift`); on stop the lease is revoked so it
/// vanishes at once.
final class BookieMembership: Sendable {
    let cluster: Cluster
    let bookie: Bookie
    let ttlSeconds: Int
    let gcInterval: Duration
    let logger: Logger
    /// The cluster this bookie's cookie was checked against at start.
    let clusterInstance: String
    let registration: Mutex<BookieRegistration>
    private let journalDirectories: [String]
    private let ledgerDirectories: [String]
    let lease = Mutex<LeaseID?>(nil)
    private let loop = Mutex<Task<Void, Never>?>(nil)
    /// Re-replication locks GC took and could not let go of (metadata did not answer): bound to the registration
    /// lease, which lives as long as the bookie, they would keep workers off their ledgers. Let go first next time.
    let locksToRelease = Mutex<Set<String>>([])
    /// True while a pass deletes left-behind copies. Passes (the periodic one, `dlogctl admin gc`) share the
    /// registration lease, and a lock held by that lease counts as held by each: two at once could have one delete
    /// copies a worker made after the other let the lock go.
    let deletingLeftBehind = Mutex(false)
    /// GC's view of metadata between full listings.
    let feed: LedgerChangeFeed
    let garbage = Mutex(GarbageState())
    /// Full listings of every ledger's metadata, and ledgers GC deleted: `dlog_bookie_gc_*` in the metrics.
    let listings = Atomic<Int>(0)
    let collected = Atomic<Int>(0)

    init(cluster: Cluster, clusterInstance: String, bookie: Bookie, registration: BookieRegistration,
         settings: BookieSettings, logger: Logger) {
        self.cluster = cluster
        self.clusterInstance = clusterInstance
        self.bookie = bookie
        self.registration = Mutex(registration)
        ttlSeconds = settings.registrationTTLSeconds
        gcInterval = .milliseconds(settings.gcIntervalMillis)
        journalDirectories = settings.journalDirectories
        ledgerDirectories = settings.ledgerDirectories
        self.logger = logger
        feed = LedgerChangeFeed(store: cluster.store, holds: { [bookie] in bookie.storage.ledgerState($0) != nil },
                                logger: logger)
    }

    /// Refuses a bookie that is not part of an initialized cluster or whose disks are not the ones metadata
    /// recorded for it. Runs before the bookie serves anything.
    /// Returns the cluster instance id. A store that cannot be reached is retried for up to `patience`
    /// (the metadata role may be starting too); then the error is thrown as it is.
    static func verifyCookie(cluster: Cluster, bookie: BookieID, disks: String, settings: BookieSettings,
                             patience: Duration, logger: Logger) async throws -> String {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                let instance = try await cluster.instanceID()
                let cookie = BookieCookie(cluster: instance, disks: disks, journalDirectories: settings.journalDirectories,
                                          ledgerDirectories: settings.ledgerDirectories)
                try await cluster.verifyOrRecordCookie(cookie, bookie: bookie)
                return instance
            } catch let error as MetadataError where error.isRetryable && ContinuousClock.now < deadline {
                logger.warning("metadata store not reachable yet; retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Throws unless metadata still belongs to the cluster this bookie joined: a metadata store that came
    /// back empty or is another cluster's must never make the bookie register there or delete its data.
    func checkSameCluster() async throws {
        let now: String
        do {
            now = try await cluster.instanceID()
        } catch ClusterError.notInitialized {
            now = "(none)"
        }
        guard now == clusterInstance else {
            throw ClusterError.cookieMismatch(bookie: registration.withLock { $0.id },
                what: "metadata now holds cluster instance \(now), but this bookie joined \(clusterInstance); "
                    + "not registering and not collecting garbage until that is resolved")
        }
    }

    /// Registers, then keeps the registration alive and current in the background.
    func start() async throws {
        try await registerAfresh()
        let task = Task { [self] in await maintain() }
        loop.withLock { $0 = task }
    }

    private func registerAfresh() async throws {
        try await checkSameCluster()
        let id = registration.withLock { $0.id }
        // A registration left by this bookie's previous life lives until its lease expires: wait that out
        // before granting ours, so our lease is not half used up by the wait before its first keep-alive.
        try await cluster.waitUntilUnregistered(id, waitMax: .seconds(ttlSeconds * 2 + 1))
        let granted = try await cluster.store.grantLease(ttlSeconds: ttlSeconds)
        lease.withLock { $0 = granted.id }
        var current = registration.withLock { $0 }
        current.readOnly = bookie.isReadOnly
        current.disks = disks()
        registration.withLock { $0 = current }
        try await cluster.register(current, lease: granted.id, waitMax: .seconds(1))
        logger.info("registered in metadata", metadata: ["bookie_id": "\(current.id)", "read_only": "\(current.readOnly)"])
    }

    /// Keep-alive at a third of the TTL, state moves within a second, deleted ledgers within a second of their
    /// metadata, the rest of GC at its interval (the first pass at once, to start following metadata); errors are
    /// logged and retried, never fatal: the bookie keeps serving what it has while metadata is away.
    private func maintain() async {
        let keepAliveEvery = Duration.seconds(ttlSeconds) / 3
        var lastKeepAlive = ContinuousClock.now
        var lastGC: ContinuousClock.Instant?
        while !Task.isCancelled {
            try? await Task.sleep(for: min(keepAliveEvery, .seconds(1)))
            guard !Task.isCancelled else { return }
            do {
                if ContinuousClock.now - lastKeepAlive >= keepAliveEvery {
                    try await keepAlive()
                    lastKeepAlive = .now
                }
                try await followState()
                if try await decommissioned() { return }
                if lastGC.map({ ContinuousClock.now - $0 >= gcInterval }) ?? true {
                    lastGC = .now
                    try await collectChanges()
                } else {
                    try await collectDeleted()
                }
            } catch {
                logger.warning("metadata upkeep failed; retrying", metadata: ["error": "\(error)"])
            }
        }
    }

    private func keepAlive() async throws {
        guard let id = lease.withLock({ $0 }) else { return try await registerAfresh() }
        do {
            _ = try await cluster.store.keepAlive(id)
        } catch MetadataError.leaseExpired {
            // Metadata was out of reach longer than the TTL: clients saw this bookie leave. Come back.
            logger.warning("registration lease expired; registering again", metadata: ["lease": "\(id.rawValue)"])
            lease.withLock { $0 = nil }
            try await registerAfresh()
        }
    }

    /// A drained bookie is decommissioned while it runs (`dlogctl bookie drain`): its cookie is deleted once
    /// no ledger names it. It then leaves the registry for good and keeps serving reads to whoever still asks,
    /// until it is stopped.
    private func decommissioned() async throws -> Bool {
        guard bookie.isDraining else { return false }
        let id = registration.withLock { $0.id }
        guard try await cluster.cookie(of: id) == nil else { return false }
        logger.notice("decommissioned: no ledger names this bookie any more; leaving the cluster. Stop it now (its data is no longer needed)",
                      metadata: ["bookie_id": "\(id)"])
        if let lease = lease.withLock({ current in defer { current = nil }; return current }) {
            try? await cluster.store.revoke(lease)
        }
        return true
    }

    private func followState() async throws {
        let readOnly = bookie.isReadOnly
        var current = registration.withLock { $0 }
        guard current.readOnly != readOnly, let id = lease.withLock({ $0 }) else { return }
        current.readOnly = readOnly
        current.disks = disks()
        try await cluster.updateRegistration(current, lease: id)
        registration.withLock { $0 = current }
        logger.notice("registration moved", metadata: ["bookie_id": "\(current.id)", "read_only": "\(readOnly)"])
    }

    private func disks() -> [BookieRegistration.Disk] {
        let all = journalDirectories.map { ($0, "journal") } + ledgerDirectories.map { ($0, "ledger") }
        return all.compactMap { path, role in
            (try? FileSystem.usage(of: path)).map {
                BookieRegistration.Disk(path: path, role: role, totalBytes: $0.totalBytes, freeBytes: $0.freeBytes)
            }
        }
    }

    /// Stops upkeep and revokes the lease, so the bookie leaves the registry at once.
    func stop() async {
        loop.withLock { $0 }?.cancel()
        feed.stop()
        guard let id = lease.withLock({ current in defer { current = nil }; return current }) else { return }
        do {
            try await cluster.store.revoke(id)
            logger.info("deregistered from metadata")
        } catch {
            logger.warning("could not deregister; the registration vanishes when its lease expires",
                           metadata: ["error": "\(error)"])
        }
        await cluster.store.shutdown()
    }
}

/// Runs async work from the daemon's blocking start and stop paths.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = Mutex<Result<T, any Error>?>(nil)
    Task {
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
        result.withLock { $0 = outcome }
        done.signal()
    }
    done.wait()
    return try result.withLock { $0! }.get()
}
