import DistributedLog
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Synchronization
import Testing

/// The write tier end to end, as processes: a metadata role, 3 bookies and 2 `dlogd proxy` on loopback.
@Suite(.serialized) struct ProxyProcessTests {
    @Test func theOwningProxyKilledMidLoadLosesNothingAcknowledged() async throws {
        // Proves that with two writers and two tailing readers on one stream, SIGKILL of the proxy that owns it
        // moves ownership to the other proxy (after the dead one's lease) and every acknowledged record is read,
        // by every reader, once, in order, at its DLSN.
        try await withProcessCluster(bookies: 3) { cluster in
            let config = cluster.dir.sub("proxy.conf")
            try "metadata = \(cluster.uri)\nownership_lease_s = 2\nmetrics_port = 0\n".write(toFile: config, atomically: true, encoding: .utf8)
            var proxies: [DaemonProcess] = []
            for _ in 0..<2 { proxies.append(try await DaemonProcess.start(["--config", config], role: "proxy")) }
            defer { for proxy in proxies { proxy.kill(SIGKILL) } }
            let addresses = proxies.map { "127.0.0.1:\($0.port)" }

            let (pool, _) = try cluster.client()
            var options = LogOptions()
            options.readPollTimeout = .milliseconds(300)
            let namespace = Namespace(pool: pool, options: options)
            let client = ProxyClient(proxies: addresses)
            try await client.create("e2e")
            let readers = try await (0..<2).asyncMap { _ in try await namespace.openReader("e2e") }
            let acked = Acknowledged()
            let deadline = ContinuousClock.now + .seconds(5)
            let writers = (0..<2).map { w in
                Task {
                    var n = 0
                    while ContinuousClock.now < deadline {
                        let payload = Array("w\(w)-\(n)".utf8)
                        let dlsn = try await client.write("e2e", payload)
                        acked.add(dlsn, payload)
                        n += 1
                    }
                }
            }
            try await Task.sleep(for: .seconds(1))
            let beforeKill = acked.all.map(\.0.segment).max() ?? 0
            let owner = try #require(try await client.owner(of: "e2e"))
            let ownerIndex = try #require(addresses.firstIndex(of: owner))
            proxies[ownerIndex].kill(SIGKILL)
            for writer in writers { try await writer.value }
            let confirmed = acked.all.sorted { $0.0 < $1.0 }
            #expect(confirmed.contains { $0.0.segment > beforeKill }, "writes went on in a new owner's segment")
            let next = try await client.owner(of: "e2e")
            #expect(next != nil && next != owner, "the surviving proxy owns the stream")

            for reader in readers {
                var seen: [DLSN: [UInt8]] = [:]
                var order: [DLSN] = []
                let until = ContinuousClock.now + .seconds(30)
                while seen[confirmed.last!.0] == nil && ContinuousClock.now < until {
                    for record in try await reader.readBulk(max: 1000, wait: .milliseconds(300)) {
                        #expect(seen[record.dlsn] == nil, "\(record.dlsn) delivered twice")
                        seen[record.dlsn] = record.payload
                        order.append(record.dlsn)
                    }
                }
                #expect(order == order.sorted(), "delivered in order")
                for (dlsn, payload) in confirmed { #expect(seen[dlsn] == payload, "acknowledged \(dlsn) read back") }
            }
            // The surviving owner's metrics count what it wrote.
            let survivor = proxies[1 - ownerIndex].stderr
            let range = try #require(survivor.range(of: "metrics serving address=127.0.0.1:"), "\(survivor)")
            let port = try #require(Int(survivor[range.upperBound...].prefix { $0.isNumber }))
            let scrape = try httpGet(port: port, path: "/metrics")
            #expect(scrape.contains("dlog_proxy_streams_owned 1") && scrape.contains("dlog_proxy_requests_total{op=\"write\"}"), "\(scrape)")
            await client.shutdown()
        }
    }
}

/// Acknowledged writes, gathered from several writer tasks.
final class Acknowledged: Sendable {
    private let list = Mutex<[(DLSN, [UInt8])]>([])
    func add(_ dlsn: DLSN, _ payload: [UInt8]) { list.withLock { $0.append((dlsn, payload)) } }
    var all: [(DLSN, [UInt8])] { list.withLock { $0 } }
}
