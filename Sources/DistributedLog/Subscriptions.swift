import DLogMetadata
import DLogWire
import Foundation

/// Named positions in one log, for consumers that resume where they left off: each subscription keeps the
/// DLSN of the last record its consumer finished with. A position only moves forward (a compare-and-set loop,
/// so concurrent commits keep the highest). The log itself does not depend on them.
public struct Subscriptions: Sendable {
    public let log: String
    let namespace: Namespace
    var store: any MetadataStore { namespace.store }

    /// The committed position of `id`, or nil when it has none.
    public func position(_ id: String) async throws -> DLSN? {
        try check(id)
        guard let item = try await store.get(LogKeys.subscription(log, id)) else { return nil }
        return try decode(item.value, id)
    }

    /// Every subscription of the log and its position.
    public func all() async throws -> [String: DLSN] {
        var positions: [String: DLSN] = [:]
        for item in try await store.list(prefix: LogKeys.subscriptions(log)).items {
            let id = String(item.key.dropFirst(LogKeys.subscriptions(log).count))
            positions[id] = try decode(item.value, id)
        }
        return positions
    }

    /// Moves `id` forward to `dlsn` (the last record it finished with); a position at or past `dlsn` stays.
    /// Returns the position now stored.
    @discardableResult
    public func commit(_ id: String, _ dlsn: DLSN) async throws -> DLSN {
        try await commit(id, dlsn, holding: nil)
    }

    /// With `lock`, the commit applies only while that exclusive reader lock is still held (checked in the
    /// same transaction), so a reader whose lease ran out cannot move a position another reader now owns.
    func commit(_ id: String, _ dlsn: DLSN, holding lock: OwnershipLock?) async throws -> DLSN {
        try check(id)
        let key = LogKeys.subscription(log, id)
        for _ in 0..<16 {
            let item = try await store.get(key)
            if let item, let stored = try? decode(item.value, id), stored >= dlsn { return stored }
            var checks = [Transaction.Check(key: key, version: item?.version ?? .absent)]
            if let lock { checks.append(.init(key: lock.key, version: lock.version)) }
            do {
                _ = try await store.commit(Transaction(checks: checks, operations: [.put(key: key, value: dlsn.bytes, lease: nil)]))
                return dlsn
            } catch MetadataError.versionConflict(let failed, _, _) {
                if let lock, failed == lock.key {
                    throw LogError.ownershipLost(log, "the exclusive reader of subscription '\(id)' lost its lock")
                }
                continue  // another commit came first: compare again
            }
        }
        throw LogError.busy(log, "subscription '\(id)' is being committed by many clients at once; try again")
    }

    public func delete(_ id: String) async throws {
        try check(id)
        if let item = try await store.get(LogKeys.subscription(log, id)) {
            try await store.delete(item.key, ifVersion: item.version)
        }
    }

    /// A reader that starts after `id`'s committed position (at the start of the log without one). With
    /// `exclusive`, it also takes the subscription's reader lock: a second exclusive reader of the same
    /// subscription is refused while this one lives.
    public func openReader(_ id: String, exclusive: Bool = false) async throws -> Subscriber {
        try check(id)
        var lock: OwnershipLock?
        if exclusive {
            do {
                lock = try await OwnershipLock.acquire(LogKeys.subscriberLock(log, id), owner: "reader-\(UUID().uuidString.prefix(8))",
                                                       store: store, leaseSeconds: namespace.options.ownershipLeaseSeconds,
                                                       wait: .zero, log: log)
            } catch LogError.ownedByOther(_, let owner) {
                throw LogError.busy(log, "subscription '\(id)' already has an exclusive reader (\(owner)); one at a time")
            }
        }
        do {
            let start = try await position(id).map { DLSN(segment: $0.segment, entry: $0.entry, slot: $0.slot + 1) } ?? .initial
            let reader = try await namespace.openReader(log, from: .dlsn(start))
            return Subscriber(id: id, reader: reader, subscriptions: self, lock: lock)
        } catch {
            await lock?.release()
            throw error
        }
    }

    private func check(_ id: String) throws {
        if let problem = LogName.subscriptionProblem(id) { throw LogError.invalidName(id, "subscription id: \(problem)") }
    }

    private func decode(_ bytes: [UInt8], _ id: String) throws -> DLSN {
        do {
            return try DLSN(bytes: bytes)
        } catch {
            throw LogError.damaged(log, "subscription '\(id)': \(error)")
        }
    }
}

/// A subscription's reader: read with `reader`, then `commit` what was processed.
public final class Subscriber: Sendable {
    public let id: String
    public let reader: LogReader
    let subscriptions: Subscriptions
    let lock: OwnershipLock?

    init(id: String, reader: LogReader, subscriptions: Subscriptions, lock: OwnershipLock?) {
        self.id = id
        self.reader = reader
        self.subscriptions = subscriptions
        self.lock = lock
    }

    /// Commits `dlsn` as processed; on an exclusive subscription, only while this reader still holds it.
    @discardableResult
    public func commit(_ dlsn: DLSN) async throws -> DLSN { try await subscriptions.commit(id, dlsn, holding: lock) }

    /// Ends the reader's hold on an exclusive subscription.
    public func close() async { await lock?.release() }
}

extension Namespace {
    public func subscriptions(_ log: String) throws -> Subscriptions {
        try Self.check(log)
        return Subscriptions(log: log, namespace: self)
    }
}
