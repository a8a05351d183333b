import DistributedLog
import DLogTestSupport
import DLogWire
import NIOCore
import Testing

/// How a proxy gathers the writes of one read of a connection.
@Suite struct ProxyBatchingTests {
    @Test func writesThatArriveInOneReadGoOutInOneEntry() async throws {
        // Proves the writes a proxy reads in one go are handed to the stream's writer in one step: five writes
        // sent in one segment, while both of the writer's entry slots are free, become one entry of five records
        // in the order sent. Handed over one by one, the first two went out as entries of their own.
        try await withProxies(1) { proxies in
            let client = ProxyClient(proxies: proxies.addresses)
            let first = try await client.write("gathered", Array("opening".utf8))
            var bytes = ByteBufferAllocator().buffer(capacity: 512)
            for n in 1...5 {
                ProxyRequest.write(stream: "gathered", ProxyRecord(payload: Array("w\(n)".utf8)))
                    .encode(requestID: UInt64(n), into: &bytes)
            }
            let raw = try #require(RawConnection(port: proxies.proxies[0].localAddress!.port!))
            #expect(raw.send(Array(bytes.readableBytesView)))
            let records = try await readAll(proxies.namespace, "gathered", count: 6)
            let payloads = records.map { String(decoding: $0.payload, as: UTF8.self) }
            #expect(payloads == ["opening", "w1", "w2", "w3", "w4", "w5"])
            let burst = records.dropFirst().map(\.dlsn)
            #expect(burst.allSatisfy { $0.segment == first.segment && $0.entry == first.entry + 1 }, "\(burst)")
            #expect(burst.map(\.slot) == [0, 1, 2, 3, 4])
            await client.shutdown()
        }
    }
}
