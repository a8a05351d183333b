import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Synchronization
import Testing

/// The cluster records on top of the contract, on every backend.
@Suite struct ClusterTests {
    static func ledger(_ bookies: [String], state: LedgerMetadata.State = .open) -> LedgerMetadata {
        LedgerMetadata(ensembleSize: bookies.count, writeQuorum: bookies.count, ackQuorum: max(1, bookies.count - 1),
                       passwordHash: Array(repeating: 9, count: 20),
                       fragments: [.init(firstEntry: EntryID(0), bookies: bookies.map { BookieID($0) })],
                       state: state, creationTime: 1_700_000_000_000)
    }

    @Test(arguments: Backend.allCases)
    func clusterIsInitializedOnce(_ backend: Backend) async throws {
        // Proves the instance id is created once and a second init refuses, naming the existing id.
        try await withStore(backend) { _, store in
            let cluster = Cluster(store: store)
            await #expect(throws: ClusterError.notInitialized) { try await cluster.instanceID() }
            let instance = try await cluster.initialize()
            await #expect(throws: ClusterError.alreadyInitialized(instance: instance)) { try await cluster.initialize() }
            #expect(try await cluster.instanceID() == instance)
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentAllocatorsNeverShareALedgerID(_ backend: Backend) async throws {
        // Proves ledger ids from several allocators on separate connections, racing on one counter, are all
        // distinct.
        try await withStore(backend) { fixture, _ in
            let allocators = try (0..<4).map { _ in LedgerIDAllocator(cluster: Cluster(store: try fixture.client()), blockSize: 7) }
            let ids = try await withTimeout(60, "allocating ids") {
                try await withThrowingTaskGroup(of: [LedgerID].self) { group in
                    for allocator in allocators {
                        group.addTask { var mine: [LedgerID] = []; for _ in 0..<150 { mine.append(try await allocator.next()) }; return mine }
                    }
                    return try await group.reduce(into: [LedgerID]()) { $0 += $1 }
                }
            }
            #expect(ids.count == 600)
            #expect(Set(ids).count == 600, "\(600 - Set(ids).count) ids were handed out twice")
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentCallersOfOneAllocatorShareItsReservations(_ backend: Backend) async throws {
        // Proves one allocator reserves one block at a time however many callers want ids at once, and that blocks
        // grow while ids go fast: 512 callers at once get distinct ids from a handful of reservations (7, 14, 28,
        // … ids), where each caller used to race the others for a block of its own (up to 512 blocks, and at
        // worst "64 attempts lost to other allocators").
        try await withStore(backend) { fixture, store in
            let allocator = LedgerIDAllocator(cluster: Cluster(store: try fixture.client()), blockSize: 7)
            let ids = try await withTimeout(60, "allocating ids") {
                try await withThrowingTaskGroup(of: LedgerID.self) { group in
                    for _ in 0..<512 { group.addTask { try await allocator.next() } }
                    return try await group.reduce(into: [LedgerID]()) { $0.append($1) }
                }
            }
            #expect(Set(ids).count == 512, "\(512 - Set(ids).count) ids were handed out twice")
            let counter = try #require(try await store.get(ClusterKeys.ledgerIDCounter))
            let reserved = try #require(UInt64(String(decoding: counter.value, as: UTF8.self))) - 1
            // Doubling from 7 reaches 512 in 7 reservations (889 ids); a slow first round trip may restart the
            // doubling once. A block per caller would have reserved 512 × 7 = 3,584.
            #expect(reserved <= 2 * 889, "\(reserved) ids reserved for 512")
        }
    }

    @Test(arguments: Backend.allCases)
    func ledgerMetadataChangesOnlyByCompareAndSet(_ backend: Backend) async throws {
        // Proves ledger metadata round-trips through the store, a stale update is refused, and listing
        // visits ledgers in id order.
        try await withStore(backend) { _, store in
            let cluster = Cluster(store: store)
            let open = Self.ledger(["a:1", "b:1", "c:1"])
            let v1 = try await cluster.createLedger(LedgerID(42), open)
            await #expect(throws: ClusterError.ledgerExists(LedgerID(42))) { try await cluster.createLedger(LedgerID(42), open) }
            var recovering = open
            recovering.state = .inRecovery
            let v2 = try await cluster.updateLedger(LedgerID(42), recovering, ifVersion: v1)
            var closed = open
            closed.state = .closed
            closed.lastEntry = EntryID(99)
            await #expect(throws: MetadataError.versionConflict(key: ClusterKeys.ledger(LedgerID(42)), expected: v1, actual: v2)) {
                try await cluster.updateLedger(LedgerID(42), closed, ifVersion: v1)
            }
            let read = try #require(try await cluster.ledger(LedgerID(42)))
            #expect(read.metadata == recovering && read.version == v2)
            for id in [7, 1000, 3, 10_000_000_000] { try await cluster.createLedger(LedgerID(UInt64(id)), open) }
            var order: [UInt64] = []
            try await cluster.forEachLedger { id, _, _ in order.append(id.rawValue) }
            #expect(order == [3, 7, 42, 1000, 10_000_000_000])
            try await cluster.deleteLedger(LedgerID(42), ifVersion: v2)
            #expect(try await cluster.ledgerIDs().contains(LedgerID(42)) == false)
        }
    }

    @Test(arguments: Backend.allCases)
    func registrationFollowsTheLeaseAndTheBookieState(_ backend: Backend) async throws {
        // Proves a bookie's registration is listed while its lease lives, moves between writable and
        // read-only, and disappears when the lease ends.
        try await withStore(backend) { _, store in
            let cluster = Cluster(store: store)
            let lease = try await store.grantLease(ttlSeconds: 30)
            var registration = BookieRegistration(id: BookieID("b1:3181"), address: "127.0.0.1:3181", rack: "/zone-a/r1",
                                                  readOnly: false, disks: [], startedAt: 1)
            try await cluster.register(registration, lease: lease.id, waitMax: .seconds(1))
            #expect(try await cluster.bookies() == [registration])
            #expect(try await store.get(ClusterKeys.registration(registration.id, readOnly: false)) != nil)
            registration.readOnly = true
            try await cluster.updateRegistration(registration, lease: lease.id)
            #expect(try await cluster.bookies() == [registration])
            #expect(try await store.get(ClusterKeys.registration(registration.id, readOnly: false)) == nil)
            // A second bookie claiming the same id is refused once the wait runs out.
            let other = try await store.grantLease(ttlSeconds: 30)
            await #expect(throws: ClusterError.duplicateBookie(registration.id)) {
                try await cluster.register(registration, lease: other.id, waitMax: .milliseconds(600))
            }
            try await store.revoke(lease.id)
            #expect(try await cluster.bookies().isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func cookiesGuardDisksAndDecommissionChecksData(_ backend: Backend) async throws {
        // Proves a bookie's cookie is recorded once and then checked (other disks are refused by name), and
        // that decommissioning refuses while the bookie runs or holds ledger data, then removes the cookie.
        try await withStore(backend) { _, store in
            let cluster = Cluster(store: store)
            let instance = try await cluster.initialize()
            let id = BookieID("b2:3181")
            let cookie = BookieCookie(cluster: instance, disks: "disk-1", journalDirectories: ["/j"], ledgerDirectories: ["/l"])
            try await cluster.verifyOrRecordCookie(cookie, bookie: id)
            try await cluster.verifyOrRecordCookie(cookie, bookie: id)
            var wiped = cookie
            wiped.disks = "disk-2"
            do {
                try await cluster.verifyOrRecordCookie(wiped, bookie: id)
                Issue.record("a bookie with other disks was accepted")
            } catch let error as ClusterError {
                #expect(error.description.contains("disk-2") && error.description.contains("decommission"))
            }
            let lease = try await store.grantLease(ttlSeconds: 30)
            try await cluster.register(BookieRegistration(id: id, address: "x:1", rack: "", readOnly: false, disks: [],
                                                          startedAt: 0), lease: lease.id, waitMax: .seconds(1))
            await #expect(throws: ClusterError.bookieRunning(id, state: "writable")) {
                try await cluster.startRetirement(id, drain: false)
            }
            try await store.revoke(lease.id)
            await #expect(throws: ClusterError.bookieNotRunning(id)) { try await cluster.startRetirement(id, drain: true) }
            let v = try await cluster.createLedger(LedgerID(5), Self.ledger(["a:1", id.rawValue, "c:1"]))
            #expect(try await cluster.startRetirement(id, drain: false) == 1)
            #expect(try await cluster.marks(of: LedgerID(5))?.0.marks.map(\.reason) == [.retiring])
            #expect(try await cluster.retiringBookies()[id]?.drain == false)
            await #expect(throws: ClusterError.bookieHoldsData(id, ledgers: [LedgerID(5)], count: 1)) {
                try await cluster.finishRetirement(id)
            }
            try await cluster.deleteLedger(LedgerID(5), ifVersion: v)
            try await cluster.finishRetirement(id)
            #expect(try await cluster.cookie(of: id) == nil)
            #expect(try await cluster.retiringBookies().isEmpty)
            await #expect(throws: ClusterError.unknownBookie(id)) { try await cluster.startRetirement(id, drain: false) }
        }
    }
}
