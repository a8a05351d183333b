import DLogTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing
@testable import DLogMetadata

/// The etcd backend against a real etcd 3.4 member per test. Serialized: each test starts its own member,
/// and a 2-core machine running several at once makes leader elections and lease expiry flaky.
@Suite(.serialized)
struct EtcdStoreTests {
    // MARK: Ranges

    @Test func rangeReadsKeysInByteOrderUnderThePrefix() async throws {
        // Proves keys are stored under the prefix in etcd, come back without it in byte order, and carry
        // etcd's mod_revision as version and create_revision, read at the header revision.
        try await withEtcd { etcd, store in
            let prefix = store.prefix
            try await using(etcd.store(prefix: "")) { whole in
                var versions: [String: Version] = [:]
                for key in ["/b", "/a/2", "/a/10", "/c~", "/a"] {
                    versions[key] = try await store.create(key, value: Array(key.utf8))
                }
                let updated = try await store.put("/a", value: [7], ifVersion: versions["/a"]!)

                let page = try await store.range(KeyRange(start: "/", end: "0"), limit: 100)
                #expect(page.items.map(\.key) == ["/a", "/a/10", "/a/2", "/b", "/c~"])
                #expect(!page.more)
                #expect(page.revision == Revision(updated.rawValue))
                let a = try #require(page.items.first)
                #expect(a.value == [7] && a.version == updated && a.createRevision == Revision(versions["/a"]!.rawValue))
                #expect(a.lease == nil)
                #expect(try await store.get("/a/2")?.version == versions["/a/2"])
                #expect(try await store.get("/missing") == nil)
                // The raw etcd key carries the prefix.
                #expect(try await whole.get(prefix + "/b")?.value == Array("/b".utf8))
            }
        }
    }

    @Test func rangePagesByLimitAndListReadsEveryPage() async throws {
        // Proves `limit` cuts a page with `more`, a scan continues after the last key, and `list` gathers all.
        try await withEtcd { etcd, store in
            let keys = (0..<25).map { "/p/" + String(format: "%03d", $0) }
            for key in keys.shuffled() { try await store.create(key, value: []) }

            let first = try await store.range(.prefix("/p/"), limit: 10)
            #expect(first.items.map(\.key) == Array(keys[0..<10]))
            #expect(first.more)
            let second = try await store.range(KeyRange.prefix("/p/").after(first.items.last!.key), limit: 10)
            #expect(second.items.map(\.key) == Array(keys[10..<20]))
            let all = try await store.list(prefix: "/p/")
            #expect(all.items.map(\.key) == keys)
            #expect(!all.more)
        }
    }

    @Test func rangeEndsAPageAtTheByteBudget() async throws {
        // Proves a page stops with `more` once it holds rangePageBytesMax bytes, even below the key limit.
        try await withEtcd { etcd, store in
            let value = [UInt8](repeating: 0x5A, count: MetadataLimits.valueBytesMax)
            for index in 0..<5 { try await store.create("/big/\(index)", value: value) }

            let page = try await store.range(.prefix("/big/"), limit: 100)
            #expect(page.items.count == 4)
            #expect(page.more)
            #expect(page.items.allSatisfy { $0.value == value })
        }
    }

    @Test func rangeAsksAgainForFewerKeysWhenTheAnswerIsTooBig() async throws {
        // Proves an etcd answer over responseBytesMax is not buffered whole: the range asks for fewer keys,
        // and `list` still reads every key, page by page.
        var configuration = EtcdStore.Configuration()
        configuration.responseBytesMax = 3 << 20
        try await withEtcd(configuration: configuration) { etcd, store in
            let value = [UInt8](repeating: 0x41, count: MetadataLimits.valueBytesMax)
            for index in 0..<5 { try await store.create("/big/\(index)", value: value) }

            let page = try await store.range(.prefix("/big/"), limit: 10)
            #expect(page.items.count == 2) // 10 keys are too many, 10 / 4 = 2 fit in 3 MiB of base64
            #expect(page.more)
            let all = try await store.list(prefix: "/big/")
            #expect(all.items.map(\.key) == (0..<5).map { "/big/\($0)" })
        }
    }

    // MARK: Transactions

    @Test func failedChecksNameTheFirstFailingKeyAndApplyNothing() async throws {
        // Proves a txn is all or nothing and a failed check reports the contract's error for the first failing
        // check in order, with the version etcd holds (absent → mod_revision 0 works for missing keys).
        try await withEtcd { etcd, store in
            let a = try await store.create("/a", value: [1])
            let b = try await store.create("/b", value: [2])

            await #expect(throws: MetadataError.keyExists(key: "/a")) { try await store.create("/a", value: []) }
            await #expect(throws: MetadataError.noSuchKey(key: "/gone")) {
                try await store.put("/gone", value: [], ifVersion: Version(5))
            }
            await #expect(throws: MetadataError.versionConflict(key: "/b", expected: a, actual: b)) {
                try await store.put("/b", value: [], ifVersion: a)
            }
            let failing = Transaction(checks: [.init(key: "/a", version: a), .init(key: "/b", version: .absent),
                                               .init(key: "/c", version: Version(99))],
                                      operations: [.put(key: "/new", value: [9], lease: nil), .delete(key: "/a")])
            await #expect(throws: MetadataError.keyExists(key: "/b")) { try await store.commit(failing) }
            #expect(try await store.get("/new") == nil)
            #expect(try await store.get("/a")?.version == a)

            let passing = Transaction(checks: [.init(key: "/a", version: a), .init(key: "/c", version: .absent)],
                                      operations: [.put(key: "/c", value: [3], lease: nil), .delete(key: "/a")])
            let revision = try await store.commit(passing)
            #expect(revision.rawValue > b.rawValue)
            #expect(try await store.get("/c")?.version == Version(revision))
            #expect(try await store.get("/a") == nil)
            try await store.delete("/c", ifVersion: Version(revision))
            #expect(try await store.get("/c") == nil)
        }
    }

    @Test func putUnderAMissingLeaseThrowsLeaseExpired() async throws {
        // Proves etcd's "requested lease not found" on a txn maps to leaseExpired for the lease named.
        try await withEtcd { etcd, store in
            let lease = LeaseID(0x1234_5678)
            await #expect(throws: MetadataError.leaseExpired(lease)) {
                try await store.create("/k", value: [1], lease: lease)
            }
            let found = try await store.get("/k")
            #expect(found == nil)
        }
    }

    @Test func requestsAreValidatedBeforeTheyLeave() async throws {
        // Proves limits are checked on the client: with nothing listening, bad requests fail with the
        // contract's validation errors, not unavailable (which would mean they tried to reach etcd).
        let unreachable = try EtcdStore(endpoints: [(host: "127.0.0.1", port: try EtcdServer.freePort())], prefix: "/v")
        try await using(unreachable) { store in
            await #expect(throws: MetadataError.invalidArgument("empty key")) { try await store.create("", value: []) }
            let spaced = await #expect(throws: MetadataError.self) { try await store.get("has space") }
            #expect(spaced?.isRetryable == false)
            let tooMany = Transaction(operations: (0..<129).map { .delete(key: "/k\($0)") })
            await #expect(throws: MetadataError.tooLarge("transaction of 129 checks and operations (limit 128)")) {
                try await store.commit(tooMany)
            }
            let big = [UInt8](repeating: 0, count: MetadataLimits.valueBytesMax + 1)
            let tooBig = await #expect(throws: MetadataError.self) { try await store.create("/k", value: big) }
            #expect(tooBig?.isRetryable == false)
            await #expect(throws: MetadataError.invalidArgument("range limit 0 is outside 1...10000")) {
                try await store.range(.key("/k"), limit: 0)
            }
            await #expect(throws: MetadataError.invalidArgument("lease TTL 0 s is outside 1...86400")) {
                try await store.grantLease(ttlSeconds: 0)
            }
            // And a valid request does try to reach etcd.
            let error = await #expect(throws: MetadataError.self) { try await store.get("/k") }
            #expect(error?.isRetryable == true)
        }
        #expect(throws: MetadataError.self) { try EtcdStore(endpoints: [], prefix: "/x") }
        #expect(throws: MetadataError.self) { try EtcdStore(endpoints: [(host: "h", port: 1)], prefix: "a b") }
    }

    @Test func etcdsOwnLimitErrorsMapToTooLarge() async throws {
        // Proves etcd's "request is too large" answer (here from a member with a 4 KiB request limit) is
        // reported as tooLarge with etcd's text.
        try await withEtcd(extraArguments: ["--max-request-bytes", "4096"]) { etcd, store in
            let error = await #expect(throws: MetadataError.self) {
                try await store.create("/k", value: [UInt8](repeating: 1, count: 8192))
            }
            guard case .tooLarge(let why) = error else {
                Issue.record("expected tooLarge, got \(String(describing: error))")
                return
            }
            #expect(why.contains("request is too large"))
        }
    }

    @Test func concurrentRequestsShareTheConnectionPool() async throws {
        // Proves many requests in flight at once each get their own answer (no crossed responses).
        try await withEtcd { etcd, store in
            let versions = try await withThrowingTaskGroup(of: (Int, Version).self) { group in
                for index in 0..<64 {
                    group.addTask { (index, try await store.create("/c/\(index)", value: Array("\(index)".utf8))) }
                }
                return try await group.reduce(into: [Int: Version]()) { $0[$1.0] = $1.1 }
            }
            #expect(Set(versions.values).count == 64)
            let page = try await store.range(.prefix("/c/"), limit: 100)
            for item in page.items {
                let index = Int(String(decoding: item.value, as: UTF8.self))!
                #expect(item.key == "/c/\(index)" && item.version == versions[index])
            }
            #expect(page.items.count == 64)
        }
    }

    // MARK: Watches

    @Test func watchDeliversEachRevisionAsOneBatch() async throws {
        // Proves a txn's changes arrive together as one batch (puts with values, deletes empty, prefix
        // stripped; etcd's omitted PUT type read as put), and keys outside the range are not delivered.
        try await withEtcd { etcd, store in
            let start = try await store.create("/w/old", value: [0])
            let stream = store.subscribe(.prefix("/w/"), from: Revision(start.rawValue).next)
            let txn = try await store.commit(Transaction(operations: [
                .put(key: "/w/a", value: [1], lease: nil), .put(key: "/w/b", value: [], lease: nil),
                .put(key: "/other", value: [3], lease: nil), .delete(key: "/w/old"),
            ]))
            let single = try await store.create("/w/c", value: [4])

            let batches = try await take(2, from: stream)
            #expect(batches[0] == [
                WatchEvent(kind: .put, key: "/w/a", value: [1], revision: txn),
                WatchEvent(kind: .put, key: "/w/b", value: [], revision: txn),
                WatchEvent(kind: .delete, key: "/w/old", value: [], revision: txn),
            ])
            #expect(batches[1] == [WatchEvent(kind: .put, key: "/w/c", value: [4], revision: Revision(single.rawValue))])
        }
    }

    @Test func watchCatchingUpOnHistoryCutsMessagesIntoRevisions() async throws {
        // Proves a watch from an old revision, which etcd answers with many revisions in one message, still
        // yields one batch per revision, in order.
        try await withEtcd { etcd, store in
            var revisions: [Revision] = []
            for index in 0..<5 {
                revisions.append(try await store.commit(Transaction(operations: [
                    .put(key: "/h/\(index)", value: [UInt8(index)], lease: nil),
                    .put(key: "/h/\(index)x", value: [], lease: nil),
                ])))
            }
            let batches = try await take(5, from: store.subscribe(.prefix("/h/"), from: revisions[0]))
            #expect(batches.map { $0.map(\.revision) } == revisions.map { [$0, $0] })
            #expect(batches.map { $0.map(\.key) } == (0..<5).map { ["/h/\($0)", "/h/\($0)x"] })
        }
    }

    @Test func largeHistoryArrivesInFragmentsAndIsJoinedWhole() async throws {
        // Proves the watch asks etcd to fragment responses over its request limit (3 MiB of values here, one
        // 4 MB message unfragmented, more than the 3 MiB this store holds) and joins the fragments back into
        // whole revisions with every byte intact.
        var configuration = EtcdStore.Configuration()
        configuration.responseBytesMax = 3 << 20
        try await withEtcd(configuration: configuration) { _, store in
            var written: [(Revision, [UInt8])] = []
            for index in 0..<3 {
                let value = [UInt8](repeating: UInt8(index + 1), count: MetadataLimits.valueBytesMax)
                written.append((Revision(try await store.create("/f/\(index)", value: value).rawValue), value))
            }
            let batches = try await take(3, from: store.subscribe(.prefix("/f/"), from: written[0].0))
            #expect(batches.map { $0.map(\.revision) } == written.map { [$0.0] })
            #expect(batches.map { $0[0].value } == written.map(\.1))
        }
    }

    @Test func watchFromACompactedRevisionThrowsCompacted() async throws {
        // Proves a watch asking for compacted history ends with compacted(requested:oldest:), and that
        // MetadataWatch passes it on instead of retrying.
        try await withEtcd { etcd, store in
            let first = Revision(try await store.create("/z/1", value: []).rawValue)
            _ = try await store.create("/z/2", value: [])
            let last = Revision(try await store.create("/z/3", value: []).rawValue)
            let response = try await store.http.post("/v3/kv/compaction",
                                                     body: ByteBuffer(string: #"{"revision":"\#(last.rawValue)"}"#))
            try #require(response.status == .ok)

            let expected = MetadataError.compacted(requested: first, oldest: last)
            await #expect(throws: expected) { _ = try await take(1, from: store.subscribe(.prefix("/z/"), from: first)) }
            await #expect(throws: expected) {
                try await within(.seconds(10)) {
                    for try await _ in store.watch(.prefix("/z/"), from: first) {}
                }
            }
            // From the oldest revision kept, the watch works.
            #expect(try await take(1, from: store.subscribe(.prefix("/z/"), from: last))[0][0].key == "/z/3")
        }
    }

    @Test func watchResumesAcrossAnEtcdRestartWithoutLossOrDuplicates() async throws {
        // Proves a MetadataWatch survives kill -9 and restart of etcd (same data dir): every revision written
        // before and after arrives exactly once, in order.
        try await withEtcd { etcd, store in
            let start = try await store.range(.key("/r"), limit: 1).revision
            // What the consumer saw, and the error that ended it early, if one did.
            let seen = Shared<(events: [WatchEvent], failure: String?)>(([], nil))
            let consumer = Task {
                do {
                    for try await event in store.watch(.prefix("/r/"), from: start.next) {
                        seen.withLock { $0.events.append(event) }
                    }
                } catch {
                    seen.withLock { $0.failure = "\(error)" }
                }
            }
            defer { consumer.cancel() }
            func waitFor(_ count: Int) async throws {
                try await waitUntil("\(count) events arrive") {
                    seen.withLock { $0.events.count >= count || $0.failure != nil }
                }
                try #require(seen.withLock { $0.failure } == nil)
            }

            var written: [Revision] = []
            for index in 0..<20 { written.append(Revision(try await store.create("/r/\(index)", value: []).rawValue)) }
            try await waitFor(20)
            try await etcd.restart()
            for index in 20..<40 { written.append(Revision(try await store.create("/r/\(index)", value: []).rawValue)) }
            try await waitFor(40)
            try await Task.sleep(for: .milliseconds(300)) // room for a duplicate to show up

            let events = seen.withLock { $0.events }
            #expect(events.map(\.revision) == written)
            #expect(events.map(\.key) == (0..<40).map { "/r/\($0)" })
        }
    }

    @Test func watchEndsWithUnavailableWhenEtcdDies() async throws {
        // Proves a subscription whose etcd is killed ends with a retryable unavailable naming the endpoint.
        try await withEtcd { etcd, store in
            let first = Revision(try await store.create("/d/1", value: []).rawValue)
            let stream = store.subscribe(.prefix("/d/"), from: first)
            let error = await #expect(throws: MetadataError.self) {
                try await within(.seconds(10)) {
                    var iterator = stream.makeAsyncIterator()
                    _ = try await iterator.next()
                    etcd.stop()
                    while try await iterator.next() != nil {}
                }
            }
            #expect(error?.isRetryable == true)
            #expect(error?.description.contains("127.0.0.1:\(etcd.clientPort)") == true)
        }
    }

    @Test func abandoningAWatchClosesItsConnection() async throws {
        // Proves onTermination closes the watch's HTTP connection, whether the consumer stops before or after
        // the stream opened, so abandoned watches do not pile up connections.
        try await withEtcd { _, store in
            let first = Revision(try await store.create("/o/1", value: []).rawValue)
            let before = store.http.openConnectionCount
            for _ in 0..<5 {
                #expect(try await take(1, from: store.subscribe(.prefix("/o/"), from: first))[0][0].key == "/o/1")
                _ = store.subscribe(.prefix("/o/"), from: first) // dropped at once, perhaps before it connects
            }
            try await waitUntil("watch connections close", within: .seconds(5)) { store.http.openConnectionCount <= before }
            #expect(store.http.openConnectionCount <= before)
        }
    }

    @Test func slowConsumerEndsTheSubscriptionAndMetadataWatchCatchesUp() async throws {
        // Proves the watch buffer is bounded: a consumer that falls behind gets what was buffered, then
        // unavailable("watch consumer fell behind"); MetadataWatch resumes and delivers all, in order, once.
        var configuration = EtcdStore.Configuration()
        configuration.watchBufferRevisionsMax = 4
        try await withEtcd(configuration: configuration) { etcd, store in
            let start = try await store.range(.key("/s"), limit: 1).revision
            let stream = store.subscribe(.prefix("/s/"), from: start.next)
            var written: [Revision] = []
            for index in 0..<20 { written.append(Revision(try await store.create("/s/\(index)", value: []).rawValue)) }
            try await Task.sleep(for: .milliseconds(500)) // every event reaches the full buffer

            let received = Mutex<[Revision]>([])
            await #expect(throws: MetadataError.unavailable("watch consumer fell behind")) {
                try await within(.seconds(10)) {
                    for try await batch in stream { received.withLock { $0 += batch.map(\.revision) } }
                }
            }
            #expect(received.withLock { $0 } == Array(written[0..<4]))

            let all = try await within(.seconds(20)) {
                var revisions: [Revision] = []
                for try await event in store.watch(.prefix("/s/"), from: start.next) {
                    revisions.append(event.revision)
                    if revisions.count == 20 { break }
                }
                return revisions
            }
            #expect(all == written)
        }
    }

    // MARK: Leases

    @Test func leaseKeepAliveRevokeAndItsKeys() async throws {
        // Proves grant reports etcd's TTL (raised to its minimum), keepAlive renews, keys carry the lease,
        // revoke deletes them (watchers see the delete), and a gone lease throws leaseExpired.
        try await withEtcd { etcd, store in
            let short = try await store.grantLease(ttlSeconds: 1)
            #expect(short.ttlSeconds >= 1)
            let lease = try await store.grantLease(ttlSeconds: 30)
            #expect(lease.ttlSeconds == 30)
            #expect(try await store.keepAlive(lease.id) == 30)

            let version = try await store.create("/l/owned", value: [1], lease: lease.id)
            #expect(try await store.get("/l/owned")?.lease == lease.id)
            let stream = store.subscribe(.prefix("/l/"), from: Revision(version.rawValue).next)
            try await store.revoke(lease.id)
            let batches = try await take(1, from: stream)
            #expect(batches[0].map(\.kind) == [.delete])
            #expect(batches[0].map(\.key) == ["/l/owned"])
            #expect(try await store.get("/l/owned") == nil)

            await #expect(throws: MetadataError.leaseExpired(lease.id)) { try await store.revoke(lease.id) }
            await #expect(throws: MetadataError.leaseExpired(lease.id)) { _ = try await store.keepAlive(lease.id) }
            let unknown = LeaseID(424_242)
            await #expect(throws: MetadataError.leaseExpired(unknown)) { _ = try await store.keepAlive(unknown) }
            await #expect(throws: MetadataError.leaseExpired(unknown)) { try await store.revoke(unknown) }
        }
    }

    @Test func anExpiredLeaseDeletesItsKeysAndWatchersSeeIt() async throws {
        // Proves a lease left without keep-alives expires on its own: its key vanishes, the watcher gets the
        // delete, and keepAlive then throws leaseExpired.
        try await withEtcd { etcd, store in
            let lease = try await store.grantLease(ttlSeconds: 1)
            let version = try await store.create("/e/owned", value: [1], lease: lease.id)
            let stream = store.subscribe(.prefix("/e/"), from: Revision(version.rawValue).next)
            let batches = try await take(1, from: stream, within: .seconds(Int64(lease.ttlSeconds) + 10))
            #expect(batches[0].map(\.kind) == [.delete])
            #expect(try await store.get("/e/owned") == nil)
            await #expect(throws: MetadataError.leaseExpired(lease.id)) { _ = try await store.keepAlive(lease.id) }
        }
    }

    // MARK: Failures

    @Test func unreachableEndpointIsUnavailableAndTheNextEndpointServes() async throws {
        // Proves a refused connection is a retryable unavailable naming the endpoint, and that a store with
        // a dead endpoint first in its list reaches the live one after it.
        let dead = try EtcdServer.freePort()
        try await using(EtcdStore(endpoints: [(host: "127.0.0.1", port: dead)], prefix: "/u")) { lonely in
            let error = await #expect(throws: MetadataError.self) { try await lonely.get("/k") }
            #expect(error?.isRetryable == true)
            #expect(error?.description.contains("127.0.0.1:\(dead)") == true)
            #expect(error?.description.contains("refused") == true)
            let watchError = await #expect(throws: MetadataError.self) {
                _ = try await take(1, from: lonely.subscribe(.key("/k"), from: .zero))
            }
            #expect(watchError?.isRetryable == true)
        }
        try await withEtcd { etcd, _ in
            let endpoints = [(host: "127.0.0.1", port: dead)] + etcd.endpoints
            try await using(EtcdStore(endpoints: endpoints, prefix: "/u")) { store in
                let version = try await store.create("/k", value: [1])
                #expect(try await store.get("/k")?.version == version)
            }
        }
    }

    @Test func silentEndpointTimesOut() async throws {
        // Proves every request has a timeout: a peer that accepts connections but never answers gives
        // unavailable after requestTimeout, not a hang; a watch's first message is bounded the same way.
        let silent = try SilentListener()
        defer { silent.close() }
        var configuration = EtcdStore.Configuration()
        configuration.requestTimeout = .milliseconds(300)
        let endpoints = [(host: "127.0.0.1", port: silent.port)]
        try await using(EtcdStore(endpoints: endpoints, prefix: "/t", configuration: configuration)) { store in
            let clock = ContinuousClock()
            let began = clock.now
            let error = await #expect(throws: MetadataError.self) {
                try await within(.seconds(5)) { try await store.get("/k") }
            }
            #expect(error?.description.contains("did not answer") == true)
            #expect(clock.now - began < .seconds(3))
            let watchError = await #expect(throws: MetadataError.self) {
                _ = try await take(1, from: store.subscribe(.key("/k"), from: .zero), within: .seconds(5))
            }
            #expect(watchError?.description.contains("did not answer") == true)
        }
    }

    @Test func shutdownEndsWatchesAndFailsLaterCalls() async throws {
        // Proves shutdown closes open watches (they end with unavailable) and later calls throw unavailable.
        try await withEtcd { _, store in
            let first = Revision(try await store.create("/q/1", value: []).rawValue)
            let stream = store.subscribe(.prefix("/q/"), from: first)
            let error = await #expect(throws: MetadataError.self) {
                try await within(.seconds(10)) {
                    var iterator = stream.makeAsyncIterator()
                    _ = try await iterator.next() // the watch is open
                    await store.shutdown()
                    while try await iterator.next() != nil {}
                }
            }
            #expect(error?.isRetryable == true)
            await #expect(throws: MetadataError.unavailable("the etcd store was shut down")) {
                try await store.get("/q/1")
            }
        }
    }

    @Test func etcdErrorAnswersMapToTheContractErrors() async throws {
        // Proves the answers a healthy etcd will not give on demand map sensibly: 503 and gRPC Unavailable
        // are retryable unavailable naming the endpoint, other errors internalError with etcd's text, broken
        // JSON internalError, and an error message inside a watch stream ends the watch with unavailable.
        func answer(_ status: String, _ body: String, _ check: (EtcdStore, Int) async throws -> Void) async throws {
            let server = try CannedHTTPServer(status: status, body: body)
            defer { server.close() }
            try await using(EtcdStore(endpoints: [(host: "127.0.0.1", port: server.port)], prefix: "/x")) {
                try await check($0, server.port)
            }
        }
        let noLeader = #"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#
        try await answer("503 Service Unavailable", noLeader) { store, port in
            await #expect(throws: MetadataError.unavailable("etcd 127.0.0.1:\(port): etcdserver: no leader")) {
                try await store.get("/k")
            }
        }
        let odd = #"{"error":"etcdserver: odd","message":"etcdserver: odd","code":9}"#
        try await answer("412 Precondition Failed", odd) { store, port in
            await #expect(throws: MetadataError.internalError("etcd 127.0.0.1:\(port) answered HTTP 412: etcdserver: odd")) {
                try await store.get("/k")
            }
        }
        try await answer("200 OK", "not json") { store, _ in
            let error = await #expect(throws: MetadataError.self) { try await store.get("/k") }
            #expect(error?.description.contains("JSON we cannot read") == true)
        }
        let streamError = #"{"result":{"created":true}}"# + "\n"
            + #"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#
            + "\n"
        try await answer("200 OK", streamError) { store, port in
            await #expect(throws: MetadataError.unavailable("etcd 127.0.0.1:\(port): etcdserver: no leader")) {
                _ = try await take(1, from: store.subscribe(.key("/k"), from: .zero))
            }
        }
    }

    // MARK: Watch decoding, without etcd

    @Test func decoderJoinsFragmentsAndCutsRevisions() throws {
        // Proves the decoder emits whole revisions only: a revision split over fragments is held until its
        // last fragment, a message holding several revisions yields one batch each, and a compacted
        // cancel becomes compacted(requested:oldest:).
        let endpoint = EtcdEndpoint(host: "h", port: 1)
        var decoder = EtcdWatchDecoder(prefix: Array("/p".utf8), requested: Revision(5))
        func message(_ json: String) throws -> EtcdStreamMessage<EtcdWatchResponse> {
            try JSONDecoder().decode(EtcdStreamMessage<EtcdWatchResponse>.self, from: Data(json.utf8))
        }
        func event(_ key: String, _ revision: Int, delete: Bool = false) -> String {
            let key64 = Data(("/p" + key).utf8).base64EncodedString()
            return delete ? #"{"type":"DELETE","kv":{"key":"\#(key64)","mod_revision":"\#(revision)"}}"#
                : #"{"kv":{"key":"\#(key64)","mod_revision":"\#(revision)","value":"AQ=="}}"#
        }
        var out = decoder.feed(try message(#"{"result":{"created":true}}"#), from: endpoint)
        #expect(out.batches.isEmpty && out.end == nil)
        out = decoder.feed(try message(#"{"result":{"fragment":true,"events":[\#(event("/a", 5)),\#(event("/b", 6))]}}"#), from: endpoint)
        #expect(out.batches.map { $0.map(\.key) } == [["/a"]])
        out = decoder.feed(try message(#"{"result":{"fragment":true,"events":[\#(event("/c", 6))]}}"#), from: endpoint)
        #expect(out.batches.isEmpty)
        out = decoder.feed(try message(#"{"result":{"events":[\#(event("/d", 6, delete: true)),\#(event("/e", 7))]}}"#), from: endpoint)
        #expect(out.batches.map { $0.map(\.key) } == [["/b", "/c", "/d"], ["/e"]])
        #expect(out.batches[0].map(\.kind) == [.put, .put, .delete])
        #expect(out.batches[0][0].value == [1] && out.batches[0][2].value.isEmpty)
        out = decoder.feed(try message(#"{"result":{"events":[\#(event("/old", 6))]}}"#), from: endpoint)
        #expect(out.end != nil) // a revision going backwards is etcd's fault, not something to deliver

        var compacted = EtcdWatchDecoder(prefix: [], requested: Revision(2))
        out = compacted.feed(try message(#"{"result":{"canceled":true,"compact_revision":"9"}}"#), from: endpoint)
        #expect(out.end == .compacted(requested: Revision(2), oldest: Revision(9)))
        out = compacted.feed(try message(#"{"error":{"grpc_code":14,"message":"transport is closing"}}"#), from: endpoint)
        #expect(out.end?.isRetryable == true)
    }
}

// MARK: Helpers

/// Runs `body` with a fresh etcd member and a store on it under a fresh prefix; shuts the store down and
/// kills the member whether `body` succeeds or throws.
func withEtcd(extraArguments: [String] = [], configuration: EtcdStore.Configuration = .init(),
              _ body: (EtcdServer, EtcdStore) async throws -> Void) async throws {
    let etcd = try await EtcdServer.start(extraArguments: extraArguments)
    defer { etcd.stop() }
    try await using(etcd.store(configuration: configuration)) { store in try await body(etcd, store) }
}

/// Runs `body` with `store`, then shuts the store down, whether `body` succeeds or throws.
func using<T>(_ store: EtcdStore, _ body: (EtcdStore) async throws -> T) async throws -> T {
    do {
        let result = try await body(store)
        await store.shutdown()
        return result
    } catch {
        await store.shutdown()
        throw error
    }
}

/// A value shared between a test and the tasks it starts.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

struct Stalled: Error, CustomStringConvertible {
    var description: String
}

/// `body`, or Stalled after `limit` (the body is cancelled).
func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let value = try await group.next()! else { throw Stalled(description: "not done within \(limit)") }
        return value
    }
}

/// The first `count` batches of `stream`; throws if it ends or stalls before.
func take(_ count: Int, from stream: AsyncThrowingStream<[WatchEvent], any Error>,
          within limit: Duration = .seconds(10)) async throws -> [[WatchEvent]] {
    try await within(limit) {
        var batches: [[WatchEvent]] = []
        for try await batch in stream {
            batches.append(batch)
            if batches.count == count { return batches }
        }
        throw Stalled(description: "the watch ended after \(batches.count) of \(count) batches")
    }
}

func waitUntil(_ what: String, within limit: Duration = .seconds(20),
               _ condition: @Sendable () -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        guard ContinuousClock.now < deadline else { throw Stalled(description: "\(what): not within \(limit)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

struct SocketFailure: Error, CustomStringConvertible {
    var description: String
}

/// A loopback port that accepts connections (the kernel does, into the backlog) and never answers.
final class SilentListener: Sendable {
    let port: Int
    let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketFailure(description: "socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0 && listen(fd, 16) == 0
            }
        }
        guard listening else {
            _ = Glibc.close(fd)
            throw SocketFailure(description: "cannot listen: errno \(errno)")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Shutting the socket down first wakes a thread blocked in accept.
    func close() {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        _ = Glibc.close(fd)
    }
}

/// A loopback HTTP server that answers every request with one canned response and closes the connection:
/// for the answers a healthy etcd will not give on demand (503, odd errors, broken JSON).
final class CannedHTTPServer: Sendable {
    private let listener: SilentListener
    var port: Int { listener.port }

    init(status: String, body: String) throws {
        listener = try SilentListener()
        let response = Array(("HTTP/1.1 \(status)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body).utf8)
        let fd = listener.fd
        let thread = Thread {
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return } // the listener was closed
                var request = [UInt8](repeating: 0, count: 64 << 10)
                _ = read(client, &request, request.count) // one small request, sent whole
                _ = response.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                _ = Glibc.close(client)
            }
        }
        thread.start()
    }

    func close() { listener.close() }
}
