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

extension ProxyProcessTests {
    @Test func aProxyStoppedPastItsLeaseLosesEveryStreamAndNothingAcknowledgedIsLost() async throws {
        // Proves what a proxy's shared ownership leases mean when the proxy stalls: SIGSTOP past the lease's TTL
        // loses every stream it owned at once, the other proxy takes each of them (recovering its segment), no
        // acknowledged record is lost or read twice, and after SIGCONT the stalled proxy acknowledges nothing for
        // the streams it lost: a write sent to it lands with the new owner, after everything the old one
        // acknowledged.
        try await withProcessCluster(bookies: 3) { cluster in
            let config = cluster.dir.sub("proxy.conf")
            try "metadata = \(cluster.uri)\nownership_lease_s = 2\nmetrics_port = 0\n".write(toFile: config, atomically: true, encoding: .utf8)
            var proxies: [DaemonProcess] = []
            for _ in 0..<2 { proxies.append(try await DaemonProcess.start(["--config", config], role: "proxy")) }
            defer { for proxy in proxies { proxy.kill(SIGCONT); proxy.kill(SIGKILL) } }
            let (stalled, taker) = ("127.0.0.1:\(proxies[0].port)", "127.0.0.1:\(proxies[1].port)")
            let streams = (0..<20).map { "stalled-\($0)" }
            var acked: [String: [(DLSN, [UInt8])]] = [:]
            let first = ProxyClient(proxies: [stalled])
            for stream in streams {
                for n in 0..<5 {
                    let payload = Array("\(stream) before \(n)".utf8)
                    acked[stream, default: []].append((try await first.write(stream, payload), payload))
                }
                #expect(try await first.owner(of: stream) == stalled)
            }

            proxies[0].kill(SIGSTOP)
            try await Task.sleep(for: .seconds(5))  // past the 2 s lease, whatever the store's clock granularity
            let second = ProxyClient(proxies: [taker])
            for stream in streams {
                let payload = Array("\(stream) taken".utf8)
                acked[stream, default: []].append((try await second.write(stream, payload), payload))
                #expect(try await second.owner(of: stream) == taker)
            }
            proxies[0].kill(SIGCONT)

            for stream in streams {
                let payload = Array("\(stream) after".utf8)
                let dlsn = try await first.write(stream, payload)
                #expect(dlsn > acked[stream]!.last!.0, "\(stream): written after everything acknowledged before")
                acked[stream]!.append((dlsn, payload))
                #expect(try await first.owner(of: stream) == taker, "\(stream): the stalled proxy does not claim it")
            }

            let (pool, _) = try cluster.client()
            var options = LogOptions()
            options.readPollTimeout = .milliseconds(300)
            let namespace = Namespace(pool: pool, options: options)
            for stream in streams {
                let confirmed = acked[stream]!
                let reader = try await namespace.openReader(stream)
                var read: [(DLSN, [UInt8])] = []
                let until = ContinuousClock.now + .seconds(30)
                while read.count < confirmed.count && ContinuousClock.now < until {
                    read += try await reader.readBulk(max: 100, wait: .milliseconds(300)).map { ($0.dlsn, $0.payload) }
                }
                #expect(read.map(\.0) == confirmed.map(\.0) && read.map(\.1) == confirmed.map(\.1),
                        "\(stream): read \(read.map(\.0)), acknowledged \(confirmed.map(\.0))")
            }
            await first.shutdown()
            await second.shutdown()
        }
    }
}

/// Acknowledged writes, gathered from several writer tasks.
final class Acknowledged: Sendable {
    private let list = Mutex<[(DLSN, [UInt8])]>([])
    func add(_ dlsn: DLSN, _ payload: [UInt8]) { list.withLock { $0.append((dlsn, payload)) } }
    var all: [(DLSN, [UInt8])] { list.withLock { $0 } }
}
