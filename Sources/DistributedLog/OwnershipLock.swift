import DLogMetadata
import Synchronization

/// Single-writer ownership of a log (also used for any lease-bound claim: a proxy's registration, a
/// subscription's exclusive reader): a key that names the owner, bound to the owner's lease. Taking it is a
/// create-if-absent; it is released by revoking the lease, and vanishes by itself when the owner stops renewing
/// (its process died, or it lost the metadata store for longer than the lease). Ownership only decides who may
/// try to write: correctness comes from fencing the previous owner's ledger and from compare-and-set on the
/// log's records, so two processes that both believe they own a log never both get writes acknowledged.
public final class OwnershipLock: Sendable {
    public let key: String
    public let owner: String
    public let lease: Lease
    /// The lock key's version: transactions that only its holder may apply check it.
    public let version: Version
    let store: any MetadataStore
    /// The shared lease the key is bound to; nil when the lock has a lease of its own.
    let session: LeaseSession?
    private let lost = Mutex<String?>(nil)
    private let released = Mutex(false)
    private let renewal = Mutex<Task<Void, Never>?>(nil)

    private init(key: String, owner: String, lease: Lease, version: Version, store: any MetadataStore,
                 session: LeaseSession? = nil) {
        self.key = key
        self.owner = owner
        self.lease = lease
        self.version = version
        self.store = store
        self.session = session
    }

    /// Takes the lock at `key` for `owner`, bound to one of `session`'s leases (so it costs no grant and no
    /// keep-alive of its own, and goes with the other keys of that lease if it is lost). Waits for another owner
    /// as `acquire(_:owner:store:leaseSeconds:wait:log:)` does.
    public static func acquire(_ key: String, owner: String, session: LeaseSession, wait: Duration,
                               log name: String) async throws -> OwnershipLock {
        let deadline = ContinuousClock.now + wait
        let store = session.store
        while true {
            let lease = try await session.take()
            do {
                let version = try await store.create(key, value: Array(owner.utf8), lease: lease.id)
                return OwnershipLock(key: key, owner: owner, lease: lease, version: version, store: store, session: session)
            } catch MetadataError.keyExists {
                session.returned(lease)
                let holder = (try? await store.get(key)).flatMap { $0.map { String(decoding: $0.value, as: UTF8.self) } } ?? "?"
                guard ContinuousClock.now < deadline else { throw LogError.ownedByOther(name, owner: holder) }
                try await Task.sleep(for: min(.milliseconds(200), deadline - ContinuousClock.now))
            } catch MetadataError.leaseExpired {
                session.expired(lease)  // the next round grants a new lease
                session.returned(lease)
            } catch {
                session.returned(lease)
                throw error
            }
        }
    }

    /// Takes the lock at `key` for `owner`. When another owner holds it, waits up to `wait` for it to go (zero:
    /// fail at once), then fails naming the holder.
    public static func acquire(_ key: String, owner: String, store: any MetadataStore, leaseSeconds: Int, wait: Duration,
                               log name: String) async throws -> OwnershipLock {
        let lease = try await store.grantLease(ttlSeconds: leaseSeconds)
        let deadline = ContinuousClock.now + wait
        while true {
            do {
                let version = try await store.create(key, value: Array(owner.utf8), lease: lease.id)
                let lock = OwnershipLock(key: key, owner: owner, lease: lease, version: version, store: store)
                lock.startRenewing()
                return lock
            } catch MetadataError.keyExists {
                let holder = (try? await store.get(key)).flatMap { $0.map { String(decoding: $0.value, as: UTF8.self) } } ?? "?"
                guard ContinuousClock.now < deadline else {
                    try? await store.revoke(lease.id)
                    throw LogError.ownedByOther(name, owner: holder)
                }
                // The holder's lease is renewed a few times per TTL; polling at a fraction of it is enough.
                try await Task.sleep(for: min(.milliseconds(200), deadline - ContinuousClock.now))
            } catch {
                try? await store.revoke(lease.id)
                throw error
            }
        }
    }

    /// Why the lock was lost, or nil while it is held.
    public var lostReason: String? { lost.withLock { $0 } ?? session?.lostReason(lease.id) }

    private func startRenewing() {
        let interval = Duration.milliseconds(max(200, lease.ttlSeconds * 1000 / 3))
        let ttl = Duration.seconds(lease.ttlSeconds)
        let task = Task { [weak self] in
            var renewed = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                do {
                    _ = try await self.store.keepAlive(self.lease.id)
                    renewed = .now
                } catch MetadataError.leaseExpired {
                    self.lost.withLock { $0 = $0 ?? "its lease expired (the metadata store was out of reach for longer than the lease)" }
                    return
                } catch {
                    // Unreachable for now: a few missed renewals are fine, but past the TTL the store has let
                    // the lease go (or will before it hears from us): stop acting as the owner.
                    if ContinuousClock.now - renewed >= ttl {
                        self.lost.withLock { $0 = $0 ?? "its lease could not be renewed for \(ttl) (\(error))" }
                        return
                    }
                }
            }
        }
        renewal.withLock { $0 = task }
    }

    /// Gives the lock up: the key goes with its own lease, or, bound to a session, is deleted if it is still this
    /// lock's (after a lost lease another owner may hold it already).
    public func release() async {
        // Once: a second release must not give the session back a place this lock no longer holds.
        guard released.withLock({ r in defer { r = true }; return !r }) else { return }
        renewal.withLock { $0?.cancel() }
        lost.withLock { $0 = $0 ?? "it was released" }
        if let session {
            // Retried while the store does not answer (a metadata member dying, a leader changing), for up to a
            // lease's time: a key left behind stays bound to the session's shared lease, which lives as long as
            // the process, and the log would stay held by an owner that no longer writes it.
            let deadline = ContinuousClock.now + .seconds(max(5, lease.ttlSeconds))
            var pause = Duration.milliseconds(50)
            while true {
                do {
                    _ = try await store.commit(Transaction(checks: [.init(key: key, version: version)],
                                                           operations: [.delete(key: key)]))
                    break
                } catch let refusal as MetadataError where !refusal.isRetryable {
                    break  // an answer: no longer this lock's (gone with a lost lease, or another owner's now)
                } catch {
                    // A cancelled caller gets no pause from the sleep: it gives up rather than spin.
                    guard ContinuousClock.now < deadline, !Task.isCancelled else { break }
                    try? await Task.sleep(for: pause)
                    pause = min(pause * 2, .seconds(1))
                }
            }
            session.returned(lease)
        } else {
            try? await store.revoke(lease.id)
        }
    }
}
