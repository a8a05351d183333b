import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Logging
import Testing

@Suite struct AuditorTests {
    /// The auditor watches what it acts on: an audit request (`dlogctl recovery audit`) is served at once, with
    /// a tick of a minute, where it used to wait for the next tick.
    @Test func anAuditRequestIsServedAtOnce() async throws {
        try await withLedgerCluster(bookies: 3) { fixture in
            let store = fixture.pool.cluster.store
            let lease = try await store.grantLease(ttlSeconds: 30).id
            var settings = Auditor.Settings()
            settings.tick = .seconds(60)
            let auditor = Auditor(me: BookieID("auditor"), pool: fixture.pool, settings: settings, logger: Logger(label: "test"))
            let running = Task { await auditor.run(lease: { lease }) }
            defer { running.cancel() }
            let clock = ContinuousClock()
            let start = clock.now
            while !auditor.status.isAuditor && clock.now - start < .seconds(20) { try await Task.sleep(for: .milliseconds(20)) }
            try #require(auditor.status.isAuditor, "not elected")
            #expect(auditor.status.audits == 0, "a new term audits at its interval or on request, not at election")

            let asked = clock.now
            _ = try await store.commit(Transaction(operations: [.put(key: RecoveryKeys.auditRequest, value: Array("1".utf8), lease: nil)]))
            while auditor.status.audits == 0 && clock.now - asked < .seconds(30) { try await Task.sleep(for: .milliseconds(20)) }
            #expect(auditor.status.audits == 1, "no audit within 30 s of the request, with a 60 s tick")
            #expect(clock.now - asked < .seconds(15), "the audit came \(clock.now - asked) after the request")
        }
    }
}
