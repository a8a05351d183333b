import DLogMetadata
import Synchronization

/// One lease shared by the many lease-bound keys of one process: a namespace's log ownership locks. One grant and
/// one keep-alive every third of the TTL serve them all, where a lease per key cost 10,000 streams about 3,000
/// keep-alives a second and a grant per open.
///
/// Losing the lease (the store says it expired, or it could not be renewed for a whole TTL) loses every key
/// bound to it at once, as the store drops them all; `lostReason(_:)` then names why for that lease, and the next
/// `current()` grants a new one for new keys.
public final class LeaseSession: Sendable {
    public let store: any MetadataStore
    public let ttlSeconds: Int

    private struct State {
        var lease: Lease?
        var granting: Task<Lease, any Error>?
        var renewal: Task<Void, Never>?
        /// Why each lost lease was lost.
        var lost: [LeaseID: String] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    public init(store: any MetadataStore, ttlSeconds: Int) {
        precondition(ttlSeconds >= 1)
        self.store = store
        self.ttlSeconds = ttlSeconds
    }

    /// The live lease, granted (once, however many callers ask at a time) when there is none.
    public func current() async throws -> Lease {
        while true {
            let (lease, grant) = try state.withLock { s throws -> (Lease?, Task<Lease, any Error>?) in
                if s.closed { throw MetadataError.unavailable("the lease session was closed") }
                if let lease = s.lease { return (lease, nil) }
                if let pending = s.granting { return (nil, pending) }
                let task = Task { try await self.store.grantLease(ttlSeconds: self.ttlSeconds) }
                s.granting = task
                return (nil, task)
            }
            if let lease { return lease }
            guard let grant else { continue }
            let result = await grant.result
            let installed: Lease? = state.withLock { s in
                guard s.granting == grant else { return nil }
                s.granting = nil
                guard case .success(let lease) = result, !s.closed else { return nil }
                s.lease = lease
                s.renewal = Task { [weak self] in await self?.renew(lease) }
                return lease
            }
            if case .failure(let error) = result { throw error }
            if let installed, state.withLock({ $0.closed }) {
                try? await store.revoke(installed.id)  // closed while it was being granted
            }
        }
    }

    /// Why lease `id` was lost, or nil while it is live.
    public func lostReason(_ id: LeaseID) -> String? { state.withLock { $0.lost[id] } }

    /// Revokes the lease: every key bound to it goes at once. Later `current()` calls fail.
    public func close() async {
        let lease = state.withLock { s -> Lease? in
            s.closed = true
            s.renewal?.cancel()
            if let lease = s.lease { s.lost[lease.id] = "the session was closed" }
            defer { s.lease = nil }
            return s.lease
        }
        if let lease { try? await store.revoke(lease.id) }
    }

    /// Keeps `lease` alive until it is lost or the session closes.
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

    /// Records that the store refused `lease` as expired (a create bound to it said so): every key bound to it is
    /// gone, and the next `current()` grants a new lease instead of handing this one out again.
    public func expired(_ lease: Lease) {
        lose(lease, "its lease expired (the metadata store dropped it)")
    }

    private func lose(_ lease: Lease, _ why: String) {
        state.withLock { s in
            s.lost[lease.id] = s.lost[lease.id] ?? why
            if s.lease?.id == lease.id { s.lease = nil }
        }
    }
}
