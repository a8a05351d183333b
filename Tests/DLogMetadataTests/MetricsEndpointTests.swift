@testable import DLogMetadata
import DLogTestSupport
import Foundation
import Testing

/// The `/monitoring/` records through which `dlogctl top` finds every metrics port.
@Suite struct MetricsEndpointTests {
    @Test func theDocumentedRecordIsTheStoredForm() throws {
        // Proves the example in docs/metadata.md ("Metrics endpoints") is exactly what a bookie publishes.
        let doc = try DocExamples("metadata.md")
        let line = try #require(doc.text.split(separator: "\n").first { $0.hasPrefix(#"{"address":"10.0.0.5:9100""#) })
        let endpoint = MetricsEndpoint(role: "bookie", id: "10.0.0.5:3181", address: "10.0.0.5:9100", tls: true)
        #expect(String(decoding: Cluster.encode(endpoint), as: UTF8.self) == String(line))
        #expect(try JSONDecoder().decode(MetricsEndpoint.self, from: Data(line.utf8)) == endpoint)
    }

    @Test(arguments: Backend.allCases) func endpointsLiveAsLongAsTheirLease(_ backend: Backend) async throws {
        // Proves a process's endpoints are published together, listed back in key order (role, then id), and
        // all gone once its lease is revoked (a clean stop), while another process's stay.
        try await withStore(backend) { _, store in
            let cluster = Cluster(store: store)
            let standalone = [MetricsEndpoint(role: "proxy", id: "standalone", address: "127.0.0.1:9100", tls: false),
                              MetricsEndpoint(role: "bookie", id: "bookie-0", address: "127.0.0.1:9100", tls: false,
                                              labels: ["bookie": "bookie-0"])]
            let other = MetricsEndpoint(role: "metadata", id: "10.0.0.2:3180", address: "10.0.0.2:9100", tls: true)
            let lease = try await store.grantLease(ttlSeconds: 120)
            try await cluster.publish(standalone, lease: lease.id)
            try await cluster.publish([other], lease: try await store.grantLease(ttlSeconds: 120).id)
            #expect(try await cluster.metricsEndpoints() == [standalone[1], other, standalone[0]])
            try await store.revoke(lease.id)
            #expect(try await cluster.metricsEndpoints() == [other])
        }
    }
}
