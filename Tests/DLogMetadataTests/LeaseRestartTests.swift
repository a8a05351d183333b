@testable import DLogMetadata
import DLogTestSupport
import Foundation
import Testing

@Suite struct LeaseRestartTests {
    /// Every rule of the restart table: what a lease has left, by the recorded time of the last batch.
    @Test func theRestartTable() {
        let now: Int64 = 1_800_000_000_000
        func left(_ ttl: Int, _ recorded: Int64?) -> Duration {
            LeaseRestart.remaining(ttlSeconds: ttl, recordedMilliseconds: recorded, nowMilliseconds: now)
        }
        #expect(left(10, nil) == .seconds(10), "no time recorded: the full TTL")
        #expect(left(10, 0) == .seconds(10), "no time recorded: the full TTL")
        #expect(left(10, now + 5_000) == .seconds(10), "a clock set back: the full TTL")
        #expect(left(10, now - 3_000) == .seconds(8), "a 3 s outage: TTL + 1 s margin - 3 s")
        #expect(left(10, now - 11_000) == .zero, "an outage past TTL + margin: expires at once")
        #expect(left(10, now - 60_000) == .zero)
        #expect(left(10, now) == .seconds(10), "never more than the full TTL")
    }

    @Test func aLeaseWhoseHolderGaveUpDuringAnOutageIsGoneAtRestart() async throws {
        // Proves a lease does not get a fresh TTL when the store restarts after an outage longer than the lease:
        // its holder stopped acting as the owner when it could not renew for a TTL, so its keys go at once and
        // another can take over. (Before, the key stayed a full TTL more: takeover cost outage + lease.) The
        // outage is made by moving the recorded time of the last batch 62 s back while the store is down, so
        // the test needs no long sleep and no race against a short TTL on a loaded machine.
        let dir = TempDir("dlog-lease-restart")
        var store = try EmbeddedStore(.init(directory: dir.path))
        let short = try await store.grantLease(ttlSeconds: 60)
        let long = try await store.grantLease(ttlSeconds: 600)
        try await store.create("/owner/short", value: [1], lease: short.id)
        try await store.create("/owner/long", value: [2], lease: long.id)
        await store.shutdown()
        do {
            let db = try SQLiteDatabase(path: dir.path + "/" + EmbeddedSchema.fileName)
            try db.execute("UPDATE meta SET value = value - 62000 WHERE name = '\(LeaseRestart.metaName)'")
        }
        store = try EmbeddedStore(.init(directory: dir.path))
        #expect(try await store.get("/owner/short") == nil, "the abandoned lease's key survived the restart")
        #expect(try await store.get("/owner/long")?.value == [2], "a lease with time left keeps its key")
        _ = try await store.keepAlive(long.id)
        await store.shutdown()
    }
}
