import DLogMetadata
import Synchronization

/// The leases shared by the many lease-bound keys of one process: a namespace's log ownership locks. A few grants
/// and one keep-alive per lease every third of the TTL serve them all, where a lease per key cost 10,000 streams
/// about 3,000 keep-alives a second and a grant per open.
///
/// Each lease holds at most `keysPerLease` keys: the metadata store bounds the keys of one lease (revoking one
/// deletes them all in one step), and the embedded store counts a lease's keys at every put bound to it. A lease
/// that is full, or lost, gives way to a new one; one emptied by releases is revoked.
///
/// Losing a lease (the store says it expired, or it could not be renewed for a whole TTL) loses every key bound to
/// it at once, as the store drops them all; `lostReason(_:)` then names why for that lease, until every key taken
/// on it is returned (so a long-lived session keeps no record of leases nobody asks about).
public final class LeaseSession: Sendable {
    public let store: any MetadataStore
    public let ttlSeconds: Int
    public let keysPerLease: Int

    private struct Held {
        var lease: Lease
        /// Keys bound to it (or being created) through this session.
        var keys: Int
        var renewal: Task<Void, Never>?
    }
    private struct State {
        var held: [LeaseID: Held] = [:]
        /// The lease new keys go to while it has room.
        var filling: LeaseID?
        var granting: Task<Lease, any Error>?
        /// Why each lost lease was lost, kept while keys taken on it are not yet returned (their locks ask).
        var lost: [LeaseID: (why: String, keys: Int)] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    public init(store: any MetadataStore, ttlSeconds: Int, keysPerLease: Int = 1000) {
        precondition(ttlSeconds >= 1 && keysPerLease >= 1 && keysPerLease <= MetadataLimits.keysPerLeaseMax)
        self.store = store
        self.ttlSeconds = ttlSeconds
        self.keysPerLease = keysPerLease
    }

    /// A live lease with room for one more key, counted as taken until `returned(_:)`: call that when the key
    /// was not created after all, or once it is deleted. Grants a lease (once, however many callers ask at a
    /// time) when none has room.
    public func take() async throws -> Lease {
        while true {
            let (lease, grant) = try state.withLock { s throws -> (Lease?, Task<Lease, any Error>?) in
                if s.closed { throw MetadataError.unavailable("the lease session was closed") }
                if let id = s.filling, var held = s.held[id], held.keys < keysPerLease {
                    held.keys += 1
                    s.held[id] = held
                    return (held.lease, nil)
                }
                if let pending = s.granting { return (nil, pending) }
                let task = Task { try await self.store.grantLease(ttlSeconds: self.ttlSeconds) }
                s.granting = task
                return (nil, task)
            }
            if let lease { return lease }
            guard let grant else { continue }
            let result = await grant.result
            let orphan: Lease? = state.withLock { s in
                guard s.granting == grant else { return nil }
                s.granting = nil
                guard case .success(let lease) = result else { return nil }
                if s.closed { return lease }
                s.held[lease.id] = Held(lease: lease, keys: 0, renewal: Task { [weak self] in await self?.renew(lease) })
                s.filling = lease.id
                return nil
            }
            if case .failure(let error) = result { throw error }
            if let orphan { try? await store.revoke(orphan.id) }  // the session closed while it was granted
        }
    }

    /// Gives back the place `take()` counted for a key on `lease`. A lease left with no key, and no longer the
    /// one being filled, is revoked.
    public func returned(_ lease: Lease) {
        let empty: Bool = state.withLock { s in
            if var gone = s.lost[lease.id] {
                // Lost already: forget why once no lock on it is left to ask.
                gone.keys -= 1
                s.lost[lease.id] = gone.keys > 0 ? gone : nil
                return false
            }
            guard var held = s.held[lease.id] else { return false }
            held.keys -= 1
            s.held[lease.id] = held
            guard held.keys <= 0, s.filling != lease.id else { return false }
            held.renewal?.cancel()
            s.held[lease.id] = nil
            return true
        }
        if empty { Task { try? await store.revoke(lease.id) } }
    }

    /// Why lease `id` was lost, or nil while it is live.
    public func lostReason(_ id: LeaseID) -> String? { state.withLock { $0.lost[id]?.why } }

    /// Leases live now (for status and tests).
    public var liveLeases: Int { state.withLock { $0.held.count } }

    /// Records that the store refused `lease` as expired (a create bound to it said so): every key bound to it is
    /// gone, and `take()` grants a new lease instead of handing this one out again.
    public func expired(_ lease: Lease) {
        lose(lease, "its lease expired (the metadata store dropped it)")
    }

    /// Revokes every lease: every key bound to one goes at once. Later `take()` calls fail.
    public func close() async {
        let leases = state.withLock { s -> [LeaseID] in
            s.closed = true
            for (id, held) in s.held where held.keys > 0 {
                held.renewal?.cancel()
                s.lost[id] = ("the session was closed", held.keys)
            }
            for held in s.held.values { held.renewal?.cancel() }
            defer { s.held = [:]; s.filling = nil }
            return Array(s.held.keys)
        }
        await withTaskGroup(of: Void.self) { group in
            for id in leases { group.addTask { try? await self.store.revoke(id) } }
        }
    }

    /// Keeps `lease` alive until it is lost, emptied, or the session closes.
    private func renew(_ lease: Lease) async {
        let interval = Duration.milliseconds(max(200, lease.ttlSeconds * 1000 / 3))
        let ttl = Duration.seconds(lease.ttlSeconds)
        var renewed = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { return }
            do {
                _ = try await store.keepAlive(lease.id)
                renewed = .now
            } catch MetadataError.leaseExpired {
                return lose(lease, "its lease expired (the metadata store was out of reach for longer than the lease)")
            } catch {
                // Unreachable for now: a few missed renewals are fine, but past the TTL the store has let the lease
                // go (or will before it hears from us): stop acting as the owner of anything bound to it.
                if ContinuousClock.now - renewed >= ttl {
                    return lose(lease, "its lease could not be renewed for \(ttl) (\(error))")
                }
            }
        }
    }

    private func lose(_ lease: Lease, _ why: String) {
        state.withLock { s in
            guard let held = s.held.removeValue(forKey: lease.id) else { return }  // lost, emptied or closed already
            held.renewal?.cancel()
            if held.keys > 0 { s.lost[lease.id] = (why, held.keys) }
            if s.filling == lease.id { s.filling = nil }
        }
    }
}
