import DistributedLog
import DLogWire
import NIOPosix
import Testing

/// `ProxyClient.write(_:_:txid:completion:)`: straight to a known owner and answered on the connection's event
/// loop, through the retrying path otherwise.
@Suite struct ProxyClientCallbackTests {
    /// One callback write, awaited: its result, and whether the completion ran on an event loop (the direct
    /// path) rather than in a task (the retrying path).
    private func write(_ client: ProxyClient, _ stream: String, _ payload: [UInt8],
                       txid: Int64? = nil) async -> (result: Result<DLSN, any Error>, onLoop: Bool) {
        await withCheckedContinuation { done in
            client.write(stream, payload, txid: txid) { result in
                done.resume(returning: (result, MultiThreadedEventLoopGroup.currentEventLoop != nil))
            }
        }
    }

    @Test func writesToAKnownOwnerAreAnsweredOnItsConnectionAndAMovedStreamIsStillWritten() async throws {
        // Proves the first write (no owner known) goes the retrying way and teaches the client the owner; the
        // next ones are answered on the connection's event loop, in order; once the owner drains, writes reach
        // the proxy that takes the stream over; and every acknowledged record is in the log once, in order.
        try await withProxies(2) { proxies in
            let client = ProxyClient(proxies: proxies.addresses)
            let first = await write(client, "chained", Array("c0".utf8))
            #expect(!first.onLoop, "no owner was known: the write went through a task")
            var dlsns = [try first.result.get()]
            for n in 1..<20 {
                let (result, onLoop) = await write(client, "chained", Array("c\(n)".utf8))
                dlsns.append(try result.get())
                #expect(onLoop, "write \(n) went straight to the known owner")
            }
            let owning = try #require(proxies.proxies.first { $0.service.ownedStreams.contains("chained") })
            await owning.service.drain()
            for n in 20..<30 { dlsns.append(try await write(client, "chained", Array("c\(n)".utf8)).result.get()) }
            #expect(dlsns == dlsns.sorted() && Set(dlsns).count == 30)
            #expect(try await client.owner(of: "chained") != owning.service.settings.address)
            let records = try await readAll(proxies.namespace, "chained", count: 30)
            #expect(records.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<30).map { "c\($0)" })
            await client.shutdown()
        }
    }

    @Test func aRefusalFromTheOwnerReachesTheCompletionAsIs() async throws {
        // Proves a failure that retrying cannot mend (a txid going backwards) comes straight back from the
        // owner's connection with the proxy's status and message, and the stream goes on.
        try await withProxies(1) { proxies in
            let client = ProxyClient(proxies: proxies.addresses)
            _ = try await write(client, "ordered", [1], txid: 10).result.get()
            let backwards = await write(client, "ordered", [2], txid: 5)
            #expect(backwards.onLoop)
            let failure = try #require(backwards.result.failureValue as? ProxyFailure)
            #expect(failure.status == .txidOutOfOrder && failure.message.contains("below the last txid written, 10"),
                    "\(failure)")
            let next = await write(client, "ordered", [3], txid: 11)
            #expect(next.onLoop)
            _ = try next.result.get()
            await client.shutdown()
        }
    }
}

private extension Result {
    var failureValue: Failure? {
        if case .failure(let failure) = self { failure } else { nil }
    }
}
