@testable import DistributedLog
import DLogClusterSupport
import DLogMetadata
import DLogTestSupport
import DLogWire
import Synchronization
import Testing

/// The writers of one namespace share one ownership lease (one grant and one keep-alive for all of them).
@Suite struct LeaseSessionTests {
    /// The leases the lock keys of `names` are bound to.
    static func leases(_ store: any MetadataStore, _ names: [String]) async throws -> [LeaseID?] {
        var out: [LeaseID?] = []
        for name in names { out.append(try await store.get(LogKeys.lock(name))?.lease) }
        return out
    }

    /// 40 writers of one namespace hold their logs under one lease (each used to grant and keep alive its own).
    /// Closing one deletes its key alone: another namespace takes that log at once, the others stay owned.
    @Test func writersOfOneNamespaceShareOneLease() async throws {
        try await withNamespace { namespace, fixture in
            let names = (0..<40).map { "shared-\($0)" }
            var writers: [LogWriter] = []
            for name in names { writers.append(try await namespace.openWriter(name)) }
            let leases = try await Self.leases(fixture.store, names)
            #expect(leases.allSatisfy { $0 != nil } && Set(leases).count == 1, "\(Set(leases).count) leases for 40 writers")
            #expect(namespace.session.liveLeases == 1)

            _ = try await writers[0].write(LogRecord(txid: 1, payload: [1]))
            try await writers[0].close()
            #expect(try await fixture.store.get(LogKeys.lock(names[0])) == nil)
            let other = Namespace(pool: fixture.pool, options: namespace.options)
            let taken = try await other.openWriter(names[0], owner: "other")
            #expect(try await taken.write(LogRecord(txid: 2, payload: [2])).segment == 2)
            try await taken.close()
            await #expect(throws: LogError.self) { _ = try await other.openWriter(names[1], owner: "other") }
            #expect(try await Self.leases(fixture.store, Array(names.dropFirst())) == Array(leases.dropFirst()))
            for writer in writers.dropFirst() { try await writer.close() }
        }
    }

    /// When the shared lease is lost (here revoked, as at expiry), every writer of the namespace loses its log at
    /// once: each next write fails with "ownership lost", and another namespace takes every log, with every record
    /// the old writers confirmed. The namespace itself grants a new lease for writers it opens later.
    @Test func losingTheLeaseLosesEveryLogAtOnce() async throws {
        // A short lease, so its loss is seen within seconds (renewals come every third of it), but not so short
        // that a loaded machine lets it lapse on its own; the taker's is long.
        try await withNamespace({ $0.ownershipLeaseSeconds = 6 }) { namespace, fixture in
            let names = (0..<10).map { "lost-\($0)" }
            var writers: [LogWriter] = []
            for (n, name) in names.enumerated() {
                let writer = try await namespace.openWriter(name)
                _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n)))
                writers.append(writer)
            }
            let lease = try #require(try await Self.leases(fixture.store, names)[0])
            try await fixture.store.revoke(lease)
            for name in names { #expect(try await fixture.store.get(LogKeys.lock(name)) == nil) }
            for (n, writer) in writers.enumerated() {
                var failure: String?
                let deadline = ContinuousClock.now + .seconds(20)
                while failure == nil && ContinuousClock.now < deadline {
                    do {
                        _ = try await writer.write(LogRecord(txid: Int64(100 + n), payload: [1]))
                        try await Task.sleep(for: .milliseconds(100))
                    } catch {
                        failure = "\(error)"
                    }
                }
                #expect(failure?.contains("ownership lost") == true, "\(names[n]): \(failure ?? "kept writing")")
            }
            var patient = namespace.options
            patient.ownershipLeaseSeconds = 60
            let other = Namespace(pool: fixture.pool, options: patient)
            for (n, name) in names.enumerated() {
                let writer = try await other.openWriter(name, owner: "other")
                try await writer.close()
                let records = try await read(try await other.openReader(name), count: 1)
                #expect(records.first?.payload == recordPayload(n))
            }
            let later = try await namespace.openWriter("lost-later")
            #expect(try await Self.leases(fixture.store, ["lost-later"]) != [lease])
            try await later.close()
        }
    }

    /// A session puts at most `keysPerLease` keys on one lease (the store bounds a lease's keys, and the embedded
    /// store counts them at every put), grants another when one is full, revokes one emptied by releases, and
    /// forgets a lost one once its keys are returned.
    @Test func fullLeasesGiveWayAndEmptiedOnesAreRevoked() async throws {
        try await withNamespace { _, fixture in
            let session = LeaseSession(store: fixture.store, ttlSeconds: 30, keysPerLease: 3)
            var taken: [Lease] = []
            for _ in 0..<7 { taken.append(try await session.take()) }
            let ids = taken.map(\.id)
            #expect(Set(ids[0..<3]).count == 1 && Set(ids[3..<6]).count == 1, "three keys a lease: \(ids)")
            #expect(Set(ids).count == 3 && session.liveLeases == 3)
            for lease in taken.prefix(3) { session.returned(lease) }
            #expect(session.liveLeases == 2)
            var revoked = false
            for _ in 0..<50 where !revoked {
                do { _ = try await fixture.store.keepAlive(taken[0].id); try await Task.sleep(for: .milliseconds(20)) }
                catch { revoked = true }
            }
            #expect(revoked, "the emptied lease was revoked")
            session.returned(taken[6])
            #expect(session.liveLeases == 2, "the lease being filled stays, empty or not")
            // A lost lease is named as lost while keys taken on it are out, and forgotten once they are returned:
            // a session that lives for months keeps no record of leases nobody asks about.
            session.expired(taken[3])
            #expect(session.liveLeases == 1 && session.lostReason(taken[3].id) != nil)
            for lease in taken[3..<6] { session.returned(lease) }
            #expect(session.lostReason(taken[3].id) == nil)
            await session.close()
            #expect(session.liveLeases == 0)
            await #expect(throws: MetadataError.self) { _ = try await session.take() }
        }
    }

    /// Closing the namespace revokes the shared lease: every log it still held is free at once.
    @Test func closingTheNamespaceFreesEveryLog() async throws {
        try await withNamespace({ $0.ownershipLeaseSeconds = 60 }) { namespace, fixture in
            let names = (0..<10).map { "closed-\($0)" }
            for name in names { _ = try await namespace.openWriter(name) }
            #expect(try await Self.leases(fixture.store, names).allSatisfy { $0 != nil }, "every log is owned")
            await namespace.close()
            #expect(try await Self.leases(fixture.store, names).allSatisfy { $0 == nil }, "every lock went with the lease")
            #expect(namespace.session.liveLeases == 0)
            let other = Namespace(pool: fixture.pool, options: namespace.options)
            var taken = 0
            for name in names {
                let writer = try await other.openWriter(name, owner: "other")
                taken += 1
                try await writer.close()
            }
            #expect(taken == names.count)
        }
    }

    /// A release whose delete meets an unreachable metadata store (a member dying, a leader changing) tries again:
    /// the key used to stay, bound to the session's shared lease, which lives as long as the proxy, and the proxy
    /// answered "being released by this proxy; retry" for that log for good.
    @Test func aReleaseTriesAgainWhileMetadataDoesNotAnswer() async throws {
        try await withNamespace { _, fixture in
            let store = FailingDeletes(store: fixture.store, failures: 2)
            let session = LeaseSession(store: store, ttlSeconds: 30)
            let lock = try await OwnershipLock.acquire(LogKeys.lock("flaky"), owner: "me", session: session, wait: .zero, log: "flaky")
            await lock.release()
            #expect(store.failed == 2)
            #expect(try await fixture.store.get(LogKeys.lock("flaky")) == nil, "the lock stayed after its release")
            await session.close()
        }
    }
}

/// The real store, but its first `failures` deletes fail as an unreachable store's calls do.
final class FailingDeletes: MetadataStore {
    let store: any MetadataStore
    private let left: Mutex<Int>
    private let count = Mutex(0)
    var failed: Int { count.withLock { $0 } }

    init(store: any MetadataStore, failures: Int) {
        self.store = store
        left = Mutex(failures)
    }

    func commit(_ transaction: Transaction) async throws -> Revision {
        let deletes = transaction.operations.contains { if case .delete = $0 { true } else { false } }
        if deletes, left.withLock({ n in defer { n = max(0, n - 1) }; return n > 0 }) {
            count.withLock { $0 += 1 }
            throw MetadataError.unavailable("the store does not answer (injected)")
        }
        return try await store.commit(transaction)
    }

    func range(_ range: KeyRange, limit: Int) async throws -> RangePage { try await store.range(range, limit: limit) }
    func subscribe(_ range: KeyRange, from revision: Revision) -> AsyncThrowingStream<[WatchEvent], any Error> {
        store.subscribe(range, from: revision)
    }
    func grantLease(ttlSeconds: Int) async throws -> Lease { try await store.grantLease(ttlSeconds: ttlSeconds) }
    func keepAlive(_ lease: LeaseID) async throws -> Int { try await store.keepAlive(lease) }
    func revoke(_ lease: LeaseID) async throws { try await store.revoke(lease) }
    func shutdown() async {}
}
