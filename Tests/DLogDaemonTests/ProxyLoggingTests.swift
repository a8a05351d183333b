import DistributedLog
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

@Suite(.serialized) struct ProxyLoggingTests {
    @Test func aProxySaysWhatHappenedToItsLedgersAndStreams() async throws {
        // Proves a proxy logs, at its default level and with the ledger, bookie and stream as fields: a bookie
        // replaced in an ensemble, a bookie written around (fewer than write_quorum copies), and a stream it lost.
        // Before, it logged none of these.
        try await withProcessCluster(bookies: 4) { cluster in
            let config = cluster.dir.sub("proxy.conf")
            try "metadata = \(cluster.uri)\nmetrics_port = 0\nownership_lease_s = 2\n".write(toFile: config, atomically: true, encoding: .utf8)
            let proxy = try await DaemonProcess.start(["--config", config], role: "proxy")
            defer { proxy.kill(SIGKILL) }
            let client = ProxyClient(proxies: ["127.0.0.1:\(proxy.port)"])
            try await client.create("watched")
            _ = try await client.write("watched", Array("0".utf8))
            let (pool, store) = try cluster.client()
            let ledger = try #require(try await Namespace(pool: pool).segments("watched").last?.segment.ledger)
            let ensemble = try #require(try await pool.cluster.ledger(ledger)?.metadata.fragments.last?.bookies)

            // One bookie of the ensemble dies: the fourth replaces it.
            await cluster.stopBookie(cluster.index(of: ensemble[0]))
            _ = try await client.write("watched", Array("1".utf8))
            try await eventually("the replacement logged", seconds: 20) { proxy.stderr.contains("bookie replaced in the ledger's ensemble") }
            let replaced = proxy.stderr.split(separator: "\n").first { $0.contains("bookie replaced") }.map(String.init) ?? ""
            #expect(replaced.contains("ledger=\(ledger)") && replaced.contains("bookie=\(ensemble[0].rawValue)"), "\(replaced)")

            // Another dies, with no bookie left to take its place: written around.
            await cluster.stopBookie(cluster.index(of: ensemble[1]))
            _ = try await client.write("watched", Array("2".utf8))
            try await eventually("the write-around logged", seconds: 20) { proxy.stderr.contains("writing around a failed bookie") }
            let around = proxy.stderr.split(separator: "\n").first { $0.contains("writing around") }.map(String.init) ?? ""
            #expect(around.contains("ledger=\(ledger)") && around.contains("bookie=\(ensemble[1].rawValue)"), "\(around)")
            #expect(around.hasPrefix("<4>"), "a warning: \(around)")

            // The stream's lock vanishes and another writer takes the log: the proxy's next write finds it lost.
            let lock = try #require(try await store.get(LogKeys.lock("watched")))
            try await store.delete(LogKeys.lock("watched"), ifVersion: lock.version)
            let thief = try await Namespace(pool: pool).openWriter("watched")
            var options = ProxyClient.Options()
            options.retryFor = .seconds(2)
            let impatient = ProxyClient(proxies: ["127.0.0.1:\(proxy.port)"], options: options)
            _ = try? await impatient.write("watched", Array("3".utf8))
            try await eventually("the lost stream logged", seconds: 20) {
                proxy.stderr.contains("lost ownership of stream") || proxy.stderr.contains("stream's writer failed")
            }
            let lost = proxy.stderr.split(separator: "\n").first { $0.contains("lost ownership of stream") || $0.contains("stream's writer failed") }
            #expect(lost?.contains("stream=watched") == true, "\(proxy.stderr.suffix(3000))")
            try await thief.close()
            await impatient.shutdown()
            await client.shutdown()
        }
    }
}
