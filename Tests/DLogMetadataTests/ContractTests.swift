import DLogMetadata
import DLogTestSupport
import Foundation
import Synchronization
import Testing

/// The `MetadataStore` contract, run unchanged against every backend.
@Suite struct ContractTests {
    @Test(arguments: Backend.allCases)
    func createPutDeleteFollowVersions(_ backend: Backend) async throws {
        // Proves create/put-if-version/delete-if-version succeed only at the expected version and fail with the
        // typed error carrying the actual version otherwise.
        try await withStore(backend) { _, store in
            #expect(try await store.get("/a") == nil)
            let v1 = try await store.create("/a", value: bytes("one"))
            #expect(v1 != .absent)
            await expectError(.keyExists(key: "/a")) { try await store.create("/a", value: bytes("again")) }
            let v2 = try await store.put("/a", value: bytes("two"), ifVersion: v1)
            #expect(v2 > v1)
            await expectError(.versionConflict(key: "/a", expected: v1, actual: v2)) {
                try await store.put("/a", value: bytes("stale"), ifVersion: v1)
            }
            let current = try #require(try await store.get("/a"))
            #expect(current.value == bytes("two") && current.version == v2)
            await expectError(.noSuchKey(key: "/missing")) {
                try await store.put("/missing", value: [], ifVersion: v2)
            }
            await expectError(.versionConflict(key: "/a", expected: v1, actual: v2)) {
                try await store.delete("/a", ifVersion: v1)
            }
            try await store.delete("/a", ifVersion: v2)
            #expect(try await store.get("/a") == nil)
            // A re-created key never gets a version it had before: an old CAS can never succeed again.
            let v3 = try await store.create("/a", value: bytes("three"))
            #expect(v3 > v2)
        }
    }

    @Test(arguments: Backend.allCases)
    func rangeScansInByteOrderWithContinuation(_ backend: Backend) async throws {
        // Proves range scans return keys in byte order, honour the limit, report `more`, continue after
        // the last key, and keep to their prefix.
        try await withStore(backend) { _, store in
            let names = (0..<25).map { String(format: "/r/k%03d", $0) }
            for name in names.shuffled() { try await store.create(name, value: bytes(name)) }
            try await store.create("/r0", value: [])
            try await store.create("/q", value: [])
            var range = KeyRange.prefix("/r/")
            var seen: [String] = []
            var pages = 0
            while true {
                let page = try await store.range(range, limit: 10)
                pages += 1
                seen += page.items.map(\.key)
                #expect(page.items.allSatisfy { $0.value == bytes($0.key) })
                guard page.more, let last = page.items.last else { break }
                range = range.after(last.key)
            }
            #expect(seen == names)
            #expect(pages == 3)
            let all = try await store.list(prefix: "/r")
            #expect(all.items.map(\.key) == names + ["/r0"])
        }
    }

    @Test(arguments: Backend.allCases)
    func transactionsAreAllOrNone(_ backend: Backend) async throws {
        // Proves a transaction whose checks fail applies none of its operations, and one that passes applies
        // all of them at one revision.
        try await withStore(backend) { _, store in
            let a = try await store.create("/t/a", value: bytes("a"))
            let b = try await store.create("/t/b", value: bytes("b"))
            let stale = Transaction(checks: [.init(key: "/t/a", version: a), .init(key: "/t/b", version: a)],
                                    operations: [.put(key: "/t/a", value: bytes("A"), lease: nil),
                                                 .delete(key: "/t/b"), .put(key: "/t/c", value: [], lease: nil)])
            await expectError(.versionConflict(key: "/t/b", expected: a, actual: b)) { _ = try await store.commit(stale) }
            #expect(try await store.get("/t/a")?.value == bytes("a"))
            #expect(try await store.get("/t/b") != nil)
            #expect(try await store.get("/t/c") == nil)

            let good = Transaction(checks: [.init(key: "/t/a", version: a), .init(key: "/t/b", version: b),
                                            .init(key: "/t/c", version: .absent)],
                                   operations: [.put(key: "/t/a", value: bytes("A"), lease: nil),
                                                .delete(key: "/t/b"), .put(key: "/t/c", value: bytes("C"), lease: nil)])
            let revision = try await store.commit(good)
            let a2 = try #require(try await store.get("/t/a"))
            let c = try #require(try await store.get("/t/c"))
            #expect(a2.version == Version(revision) && c.version == Version(revision))
            #expect(try await store.get("/t/b") == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func contendedTransactionsLoseNoUpdate(_ backend: Backend) async throws {
        // Proves compare-and-set under contention from several clients: every successful transaction is
        // counted exactly once, so the counters end equal to the number of successes.
        try await withStore(backend) { fixture, store in
            try await store.create("/c/x", value: bytes("0"))
            try await store.create("/c/y", value: bytes("0"))
            let clients = try (0..<4).map { _ in try fixture.client() }
            let successes = Counter()
            try await withTimeout(60, "contended increments") {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for client in clients {
                        group.addTask {
                            var mine = 0
                            while mine < 15 {
                                let x = try #require(try await client.get("/c/x"))
                                let y = try #require(try await client.get("/c/y"))
                                let nx = Int(String(decoding: x.value, as: UTF8.self))! + 1
                                let ny = Int(String(decoding: y.value, as: UTF8.self))! + 1
                                let txn = Transaction(checks: [.init(key: "/c/x", version: x.version),
                                                               .init(key: "/c/y", version: y.version)],
                                                      operations: [.put(key: "/c/x", value: bytes("\(nx)"), lease: nil),
                                                                   .put(key: "/c/y", value: bytes("\(ny)"), lease: nil)])
                                do {
                                    _ = try await client.commit(txn)
                                    mine += 1
                                    successes.add()
                                } catch MetadataError.versionConflict {
                                    continue
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            let total = successes.count
            #expect(total == 60)
            #expect(try await store.get("/c/x")?.value == bytes("\(total)"))
            #expect(try await store.get("/c/y")?.value == bytes("\(total)"))
        }
    }

    @Test(arguments: Backend.allCases)
    func watchDeliversEveryChangeOnceInOrder(_ backend: Backend) async throws {
        // Proves a watch from a revision delivers the history after it and then live changes, each once, in
        // revision order, only for keys in its range.
        try await withStore(backend) { _, store in
            let v0 = try await store.create("/w/a", value: bytes("0"))
            _ = try await store.put("/w/a", value: bytes("1"), ifVersion: v0)
            try await store.create("/other", value: [])
            let collector = EventCollector(store.watch(.prefix("/w/"), from: v0.revisionAfter))
            var version = try #require(try await store.get("/w/a")).version
            for i in 2..<40 { version = try await store.put("/w/a", value: bytes("\(i)"), ifVersion: version) }
            try await store.create("/w/b", value: bytes("b"))
            try await store.delete("/w/a", ifVersion: version)
            // The put of "1" (the revision watched from), puts 2...39, the create of /w/b, the delete.
            let events = try await collector.wait(for: 41)
            try await Task.sleep(for: .milliseconds(200))
            #expect(collector.received.count == 41, "no duplicates arrive later")
            #expect(events.map(\.value).prefix(39) == (1..<40).map { bytes("\($0)") }[...])
            #expect(zip(events, events.dropFirst()).allSatisfy { $0.revision < $1.revision })
            #expect(events.last?.kind == .delete && events.last?.key == "/w/a")
            #expect(events.allSatisfy { $0.key.hasPrefix("/w/") })
            collector.stop()
        }
    }

    @Test(arguments: Backend.allCases)
    func watchResumesAcrossRestart(_ backend: Backend) async throws {
        // Proves a watch survives the store going down hard and coming back: it reconnects and resumes from
        // the last revision it delivered, losing and repeating nothing.
        try await withStore(backend) { fixture, store in
            let start = try await store.range(.key("/x"), limit: 1).revision
            let collector = EventCollector(store.watch(.prefix("/resume/"), from: start.next))
            for i in 0..<10 { try await store.create("/resume/\(i)", value: bytes("\(i)")) }
            try await collector.wait(for: 10)
            try await fixture.restart()
            let writer = try fixture.client()
            for i in 10..<20 {
                try await retryingUnavailable {
                    // A create cut off by the restart may have applied: finding it there is success.
                    do { try await writer.create("/resume/\(i)", value: bytes("\(i)")) } catch MetadataError.keyExists {}
                }
            }
            let events = try await collector.wait(for: 20, seconds: 30)
            try await Task.sleep(for: .milliseconds(200))
            #expect(collector.received.map(\.key) == (0..<20).map { "/resume/\($0)" })
            #expect(events.count == 20)
            collector.stop()
        }
    }

    @Test(arguments: Backend.allCases)
    func leasesBindKeysAndWatchersSeeExpiry(_ backend: Backend) async throws {
        // Proves keys under a lease live while it is kept alive, vanish when it expires or is revoked, that
        // watchers see those deletes, and that a dead lease is refused by name.
        try await withStore(backend) { _, store in
            let start = try await store.range(.key("/x"), limit: 1).revision
            let collector = EventCollector(store.watch(.prefix("/l/"), from: start.next))
            // A long TTL for the kept lease: a loaded CI machine may stall this test for many seconds.
            let kept = try await store.grantLease(ttlSeconds: 60)
            try await store.create("/l/kept", value: [], lease: kept.id)
            // The short lease may expire before its key is written if the machine stalls for its whole TTL:
            // that is the behaviour under test, not a failure, so take a fresh lease then.
            var short = try await store.grantLease(ttlSeconds: 3)
            for attempt in 1...5 {
                do {
                    try await store.create("/l/short", value: [], lease: short.id)
                    break
                } catch MetadataError.leaseExpired where attempt < 5 {
                    short = try await store.grantLease(ttlSeconds: 3)
                }
            }
            // (Unless a stalled machine let it expire already.)
            if let item = try await store.get("/l/short") { #expect(item.lease == short.id) }
            // Keep one alive past the other's expiry.
            let deadline = ContinuousClock.now + .seconds(40)
            while try await store.get("/l/short") != nil {
                #expect(ContinuousClock.now < deadline, "lease never expired")
                if ContinuousClock.now >= deadline { return }
                #expect(try await store.keepAlive(kept.id) >= 1)
                try await Task.sleep(for: .milliseconds(300))
            }
            #expect(try await store.get("/l/kept") != nil)
            let expired = short
            await expectError(.leaseExpired(expired.id)) { _ = try await store.keepAlive(expired.id) }
            await expectError(.leaseExpired(expired.id)) { try await store.create("/l/late", value: [], lease: expired.id) }
            try await store.revoke(kept.id)
            #expect(try await store.get("/l/kept") == nil)
            let events = try await collector.wait(for: 4)
            #expect(events.count == 4)
            for key in ["/l/short", "/l/kept"] {
                #expect(events.filter { $0.key == key }.map(\.kind) == [.put, .delete], "\(key) was put, then deleted")
            }
            #expect(events.last?.key == "/l/kept", "the revoked lease's delete comes after the expired one's")
            collector.stop()
        }
    }

    @Test(arguments: Backend.allCases)
    func leaseBoundLockElectsOneLeaderAndFailsOver(_ backend: Backend) async throws {
        // Proves the primitives an election (an auditor, a replication worker's lock) needs hold on this
        // backend: of candidates racing to create one key under their leases exactly one wins, the others see
        // it, and when the winner's lease ends a waiting candidate takes over.
        try await withStore(backend) { fixture, _ in
            let candidates = try (0..<3).map { _ in try fixture.client() }
            var leases: [Lease] = []
            for candidate in candidates { leases.append(try await candidate.grantLease(ttlSeconds: 30)) }
            let granted = leases
            let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for (index, candidate) in candidates.enumerated() {
                    group.addTask {
                        do {
                            try await candidate.create("/election/leader", value: bytes("\(index)"), lease: granted[index].id)
                            return (index, true)
                        } catch MetadataError.keyExists {
                            return (index, false)
                        }
                    }
                }
                return try await group.reduce(into: [(Int, Bool)]()) { $0.append($1) }
            }
            let winners = outcomes.filter(\.1).map(\.0)
            #expect(winners.count == 1, "exactly one candidate wins (\(winners))")
            guard let winner = winners.first else { return }
            let follower = (winner + 1) % candidates.count
            let current = try #require(try await candidates[follower].get("/election/leader"))
            #expect(current.value == bytes("\(winner)") && current.lease == leases[winner].id)
            let collector = EventCollector(candidates[follower].watch(.key("/election/leader"), from: current.version.revisionAfter))
            try await candidates[winner].revoke(leases[winner].id)
            let events = try await collector.wait(for: 1)
            #expect(events.first?.kind == .delete, "the follower sees the leader go")
            try await candidates[follower].create("/election/leader", value: bytes("\(follower)"), lease: leases[follower].id)
            #expect(try await candidates[winner].get("/election/leader")?.value == bytes("\(follower)"))
            collector.stop()
        }
    }

    @Test(arguments: Backend.allCases)
    func limitsAreEnforcedWithClearErrors(_ backend: Backend) async throws {
        // Proves oversize keys, values and transactions and malformed keys are refused with typed errors, and
        // a value at the limit is accepted.
        try await withStore(backend) { _, store in
            let longKey = "/" + String(repeating: "k", count: MetadataLimits.keyBytesMax)
            await expectTooLarge { try await store.create(longKey, value: []) }
            await expectTooLarge {
                try await store.create("/big", value: [UInt8](repeating: 1, count: MetadataLimits.valueBytesMax + 1))
            }
            try await store.create("/max", value: [UInt8](repeating: 7, count: MetadataLimits.valueBytesMax))
            #expect(try await store.get("/max")?.value.count == MetadataLimits.valueBytesMax)
            let many = Transaction(operations: (0...MetadataLimits.transactionStepsMax).map {
                .put(key: "/many/\($0)", value: [], lease: nil)
            })
            await expectTooLarge { _ = try await store.commit(many) }
            do {
                try await store.create("/has space", value: [])
                Issue.record("a key with a space was accepted")
            } catch MetadataError.invalidArgument(let why) {
                #expect(why.contains("printable ASCII"))
            }
        }
    }
}

extension Version {
    /// The revision right after this version's, for watching from "after this write".
    var revisionAfter: Revision { Revision(rawValue + 1) }
}

func expectTooLarge(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected tooLarge, but it succeeded", sourceLocation: sourceLocation)
    } catch MetadataError.tooLarge {
    } catch {
        Issue.record("expected tooLarge, got \(error)", sourceLocation: sourceLocation)
    }
}

/// Retries while the store reports itself unavailable (it is restarting), for at most 20 s.
func retryingUnavailable<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await retrying(while: { ($0 as? MetadataError)?.isRetryable == true }, body)
}
