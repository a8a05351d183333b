import DistributedLog
import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogProxy
import DLogTestSupport
import DLogWire
import Logging
import Testing

/// Proxies over an in-process cluster: each with its own connections to the bookies, serving on loopback.
final class ProxyFixture: Sendable {
    let cluster: LedgerFixture
    let proxies: [ProxyServer]
    let pools: [BookiePool]
    var addresses: [String] { proxies.map { "127.0.0.1:\($0.localAddress!.port!)" } }

    init(_ cluster: LedgerFixture, count: Int, limits: ProxyLimits = ProxyLimits(), streamsMax: Int = 100) async throws {
        self.cluster = cluster
        var servers: [ProxyServer] = []
        var pools: [BookiePool] = []
        for index in 0..<count {
            let pool = BookiePool(cluster: cluster.cluster)
            var options = LogOptions()
            options.ownershipLeaseSeconds = 5
            options.readPollTimeout = .milliseconds(300)
            let namespace = Namespace(pool: pool, options: options)
            // The port is known only once bound: bind a probe, then describe the service with its port and bind
            // that. Any outgoing connection may take the port in between (ephemeral ports share the range), so a
            // lost race is tried again on another port.
            var bound: (ProxyService, ProxyServer)?
            for attempt in 1...5 where bound == nil {
                let probe = try ProxyServer(service: ProxyService(namespace: namespace, settings: .init(id: "probe", address: ""),
                                                                  logger: Logger(label: "probe")),
                                            host: "127.0.0.1", port: 0, logger: Logger(label: "probe"))
                let port = probe.localAddress!.port!
                probe.close()
                var settings = ProxyService.Settings(id: "proxy-\(index)", address: "127.0.0.1:\(port)")
                settings.limits = limits
                settings.streamsMax = streamsMax
                let service = ProxyService(namespace: namespace, settings: settings, logger: Logger(label: "proxy-\(index)"))
                do {
                    bound = (service, try ProxyServer(service: service, host: "127.0.0.1", port: port,
                                                      logger: Logger(label: "proxy-\(index)")))
                } catch where attempt < 5 {
                    continue
                }
            }
            let (service, server) = bound!
            servers.append(server)
            try await service.register()
            pools.append(pool)
        }
        proxies = servers
        self.pools = pools
    }

    func stop() async {
        for proxy in proxies {
            await proxy.service.drain()
            proxy.close()
        }
        for pool in pools { await pool.shutdown() }
    }

    /// A namespace of its own, for reading what the proxies wrote.
    var namespace: Namespace { Namespace(pool: cluster.pool) }
}

func withProxies(_ count: Int, limits: ProxyLimits = ProxyLimits(), streamsMax: Int = 100,
                 _ body: (ProxyFixture) async throws -> Void) async throws {
    try await withLedgerCluster(bookies: 3) { cluster in
        let fixture = try await ProxyFixture(cluster, count: count, limits: limits, streamsMax: streamsMax)
        do {
            try await body(fixture)
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }
}

/// Reads until a record with payload `last` (or `atMost` records, or 30 s).
func readAll(_ namespace: Namespace, _ stream: String, until last: String, atMost: Int) async throws -> [LogRecordWithDLSN] {
    let reader = try await namespace.openReader(stream)
    var records: [LogRecordWithDLSN] = []
    let deadline = ContinuousClock.now + .seconds(30)
    while records.count < atMost && records.last.map({ String(decoding: $0.payload, as: UTF8.self) }) != last
            && ContinuousClock.now < deadline {
        records += try await reader.readBulk(max: 1, wait: .milliseconds(300))
    }
    return records
}

func readAll(_ namespace: Namespace, _ stream: String, count: Int) async throws -> [LogRecordWithDLSN] {
    let reader = try await namespace.openReader(stream)
    var records: [LogRecordWithDLSN] = []
    let deadline = ContinuousClock.now + .seconds(30)
    while records.count < count && ContinuousClock.now < deadline {
        records += try await reader.readBulk(max: count - records.count, wait: .milliseconds(300))
    }
    return records
}

@Suite struct ProxyTests {
    @Test func clientsOfEitherProxyReachTheOwnerAndEveryWriteIsKeptInOrder() async throws {
        // Proves a stream is owned by one proxy, a client that knows only the other proxy is redirected to the
        // owner, writes from both clients (proxy-assigned txids) land in one log in order, and both clients
        // agree on the owner.
        try await withProxies(2) { proxies in
            let first = ProxyClient(proxies: [proxies.addresses[0]]), second = ProxyClient(proxies: [proxies.addresses[1]])
            var dlsns: [DLSN] = []
            for n in 0..<40 {
                dlsns.append(try await (n % 2 == 0 ? first : second).write("orders", Array("r\(n)".utf8)))
            }
            #expect(dlsns == dlsns.sorted() && Set(dlsns).count == 40)
            let owner = try #require(try await first.owner(of: "orders"))
            #expect(proxies.addresses.contains(owner))
            #expect(try await second.owner(of: "orders") == owner)
            let owning = proxies.proxies.filter { $0.service.ownedStreams == ["orders"] }
            #expect(owning.count == 1, "exactly one proxy owns the stream")
            let bulk = try await second.writeBulk("orders", (40..<50).map { ProxyRecord(payload: Array("r\($0)".utf8)) })
            #expect(bulk.count == 10 && bulk.first! > dlsns.last!)
            let records = try await readAll(proxies.namespace, "orders", count: 50)
            #expect(records.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<50).map { "r\($0)" })
            let txids = records.map(\.txid)
            #expect(txids == txids.sorted() && txids.first! > 1_700_000_000_000, "assigned txids are wall-clock ms, never decreasing")
            await first.shutdown()
            await second.shutdown()
        }
    }

    @Test func ownershipMovesWhenTheOwnerDrainsAndNothingAcknowledgedIsLost() async throws {
        try await withProxies(2) { proxies in
            let client = ProxyClient(proxies: proxies.addresses)
            for n in 0..<20 { _ = try await client.write("moving", Array("m\(n)".utf8)) }
            let owner = try #require(try await client.owner(of: "moving"))
            let owning = try #require(proxies.proxies.first { $0.service.ownedStreams.contains("moving") })
            await owning.service.drain()
            for n in 20..<40 { _ = try await client.write("moving", Array("m\(n)".utf8)) }
            let next = try #require(try await client.owner(of: "moving"))
            #expect(next != owner, "another proxy took the stream")
            // Delivery is at least once: a write whose answer timed out while the new owner took the stream over
            // (seconds, on a loaded machine) is sent again, and may then be stored twice, next to itself. Every
            // acknowledged write must be there, in order.
            let records = try await readAll(proxies.namespace, "moving", until: "m39", atMost: 60)
            let payloads = records.map { String(decoding: $0.payload, as: UTF8.self) }
            let retried = zip(payloads, payloads.dropFirst()).filter { $0 == $1 }.count
            #expect(retried <= 1, "\(payloads)")
            #expect(payloads.enumerated().filter { $0.offset == 0 || payloads[$0.offset - 1] != $0.element }.map(\.element)
                    == (0..<40).map { "m\($0)" })
            await client.shutdown()
        }
    }

    @Test func aClientFindsTheProxiesInMetadata() async throws {
        // Proves a client given only the metadata store finds the registered proxies and writes through them,
        // and that a drained proxy leaves the registry.
        try await withProxies(2) { proxies in
            let client = ProxyClient(metadata: proxies.cluster.store)
            let dlsn = try await client.write("found", Array("x".utf8))
            // Delivery is at least once: a first attempt whose answer timed out on a loaded machine is sent again
            // and stored next to itself, so the acknowledged one may be the second entry.
            #expect(dlsn.segment == 1 && dlsn.entry <= 1 && dlsn.slot == 0, "\(dlsn)")
            let registered = try await proxies.cluster.store.list(prefix: ProxyOwner.registrations).items
            #expect(Set(registered.map { String(decoding: $0.value, as: UTF8.self) }) == Set(proxies.addresses))
            await proxies.proxies[0].service.drain()
            let left = try await proxies.cluster.store.list(prefix: ProxyOwner.registrations).items
            #expect(left.map { String(decoding: $0.value, as: UTF8.self) } == [proxies.addresses[1]])
            await client.shutdown()
        }
    }

    @Test func hardLimitsRefuseWithOverCapacityAndErrorsAreClear() async throws {
        var limits = ProxyLimits()
        limits.streamRecordsHard = 20
        try await withProxies(1, limits: limits, streamsMax: 2) { proxies in
            var options = ProxyClient.Options()
            options.retryFor = .seconds(2)
            let client = ProxyClient(proxies: proxies.addresses, options: options)
            // 200 records in one request go through a full bucket (in debt, 10 s of its rate); a record right
            // after is refused, however slow the machine (the debt takes 9 s to pay off).
            _ = try await client.writeBulk("hot", (0..<200).map { ProxyRecord(payload: [UInt8($0 % 256)]) })
            do {
                _ = try await client.write("hot", [1])
                Issue.record("a write over the hard limit was accepted")
            } catch let failure as ProxyFailure {
                #expect(failure.status == .overCapacity && failure.message.contains("hard limit of 20 records/s"), "\(failure)")
            }
            // The stream limit: a proxy owning 2 streams takes no third.
            _ = try await client.write("second", [1])
            do {
                _ = try await client.write("third", [1])
                Issue.record("a proxy took more streams than its limit")
            } catch let failure as ProxyFailure {
                #expect(failure.status == .overCapacity && failure.message.contains("limit of 2 streams"))
            }
            do {
                _ = try await client.write("bad name", [1])
                Issue.record("a bad stream name was accepted")
            } catch let failure as ProxyFailure {
                #expect(failure.status == .badRequest && failure.message.contains("invalid stream name"))
            }
            try await client.create("made")
            do {
                try await client.create("made")
                Issue.record("created twice")
            } catch let failure as ProxyFailure {
                #expect(failure.status == .logExists)
            }
            await client.shutdown()
        }
    }

    @Test func badInputGetsAClearStatusAndOtherStreamsAreStillServed() async throws {
        // Proves each kind of bad input a client can send a proxy gets one clear status naming the problem (a
        // name too long or invalid, a record over the limit, a txid going backwards), the stream it concerned
        // stays usable where it exists, and a healthy stream written between them is served throughout.
        try await withProxies(1) { proxies in
            var options = ProxyClient.Options()
            options.retryFor = .seconds(2)
            let client = ProxyClient(proxies: proxies.addresses, options: options)
            var healthy = 0
            func serveHealthy() async throws {
                _ = try await client.write("healthy", Array("record \(healthy)".utf8))
                healthy += 1
            }
            func refusal(_ body: () async throws -> Void) async -> ProxyFailure? {
                do { try await body(); return nil } catch let failure as ProxyFailure { return failure } catch {
                    Issue.record("not a proxy failure: \(error)")
                    return nil
                }
            }
            try await serveHealthy()
            let long = String(repeating: "n", count: 201)
            let tooLong = await refusal { _ = try await client.write(long, [1]) }
            #expect(tooLong?.status == .badRequest && tooLong?.message.contains("201 characters; at most 200") == true, "\(String(describing: tooLong))")
            try await serveHealthy()
            let invalid = await refusal { _ = try await client.write("a/../b", [1]) }
            #expect(invalid?.status == .badRequest && invalid?.message.contains("invalid stream name") == true, "\(String(describing: invalid))")
            try await serveHealthy()
            let big = await refusal { _ = try await client.write("sized", [UInt8](repeating: 7, count: LogRecord.payloadBytesMax + 1)) }
            #expect(big?.message.contains("over the limit") == true, "\(String(describing: big))")
            _ = try await client.write("sized", [UInt8](repeating: 7, count: 1000))
            try await serveHealthy()
            _ = try await client.write("ordered", [1], txid: 10)
            let backwards = await refusal { _ = try await client.write("ordered", [2], txid: 5) }
            #expect(backwards?.status == .txidOutOfOrder && backwards?.message.contains("below the last txid written, 10") == true,
                    "\(String(describing: backwards))")
            _ = try await client.write("ordered", [3], txid: 11)
            try await serveHealthy()
            #expect(healthy == 5)
            await client.shutdown()
        }
    }
}
