import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import NIOCore
import Testing

/// What only the embedded store and the metadata role's server can show: history trimming, leases across a
/// restart, and how the server treats bad input.
@Suite struct EmbeddedStoreTests {
    @Test func watchFromTrimmedHistoryIsRefusedByName() async throws {
        // Proves a watch asking for revisions the store no longer keeps ends with `compacted`, naming the
        // oldest revision it can still serve, and that a watch from there works.
        try await withStore(.embedded, historyRevisions: 8) { _, store in
            var version = try await store.create("/h", value: bytes("0"))
            for i in 1...40 { version = try await store.put("/h", value: bytes("\(i)"), ifVersion: version) }
            var iterator = store.subscribe(.key("/h"), from: Revision(1)).makeAsyncIterator()
            do {
                _ = try await iterator.next()
                Issue.record("a watch from revision 1 was served after trimming")
            } catch MetadataError.compacted(let requested, let oldest) {
                #expect(requested == Revision(1))
                #expect(oldest > Revision(1) && oldest.rawValue <= version.rawValue - 7)
                let collector = EventCollector(store.watch(.key("/h"), from: oldest))
                let events = try await collector.wait(for: Int(version.rawValue - oldest.rawValue) + 1)
                #expect(events.last?.value == bytes("40"))
                collector.stop()
            }
        }
    }

    @Test func watchHistoryIsReadInPagesWithoutLossOrRepeat() async throws {
        // Proves a watch starting far back gets its history in bounded pages, each change once and in order,
        // including a revision larger than a page (a transaction, a lease's keys expiring together) and
        // changes to keys outside its range in between.
        let dir = TempDir("dlog-pages")
        var configuration = EmbeddedStore.Configuration(directory: dir.path)
        configuration.watchCatchUpRowsMax = 7
        let store = try EmbeddedStore(configuration)
        var expected: [String] = []
        for i in 0..<20 {
            try await store.create("/p/\(i)", value: [])
            expected.append("put /p/\(i)")
            try await store.create("/other/\(i)", value: [])
        }
        _ = try await store.commit(Transaction(operations: (0..<12).map { .put(key: "/p/t\($0)", value: [], lease: nil) }))
        expected += (0..<12).map { "put /p/t\($0)" }
        let lease = try await store.grantLease(ttlSeconds: 60)
        for i in 0..<10 { try await store.create("/p/l\(i)", value: [], lease: lease.id) }
        expected += (0..<10).map { "put /p/l\($0)" }
        try await store.revoke(lease.id)
        expected += (0..<10).map { "delete /p/l\($0)" }
        let count = expected.count
        let events = try await withTimeout(20, "reading paged history") {
            var out: [WatchEvent] = []
            for try await event in store.watch(.prefix("/p/"), from: Revision(1)) {
                out.append(event)
                if out.count == count { break }
            }
            return out
        }
        #expect(events.map { "\($0.kind == .put ? "put" : "delete") \($0.key)" } == expected)
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.revision <= $1.revision })
        await store.shutdown()
    }

    @Test func oneDirectoryServesOneStoreOnly() async throws {
        // Proves a second store on a directory in use is refused by name (two would hand out the same
        // versions), and the directory is free again once the first store stopped.
        let dir = TempDir("dlog-lock")
        let first = try EmbeddedStore(.init(directory: dir.path))
        do {
            _ = try EmbeddedStore(.init(directory: dir.path))
            Issue.record("a second store opened a directory in use")
        } catch {
            #expect("\(error)".contains("in use by another metadata store"))
        }
        await first.shutdown()
        let second = try EmbeddedStore(.init(directory: dir.path))
        await second.shutdown()
    }

    @Test func oneLeaseHoldsABoundedNumberOfKeys() async throws {
        // Proves a lease refuses keys past `keysPerLeaseMax` with a clear error (its expiry must fit in one
        // watch message), while keys re-written under the same lease do not count twice.
        let dir = TempDir("dlog-lease-keys")
        let store = try EmbeddedStore(.init(directory: dir.path))
        // Long enough that the lease outlives the commits on a loaded machine (a 60 s lease once expired there).
        let lease = try await store.grantLease(ttlSeconds: 600)
        let limit = MetadataLimits.keysPerLeaseMax
        for first in stride(from: 0, to: limit, by: 100) {
            _ = try await store.commit(Transaction(operations: (first..<first + 100).map {
                .put(key: "/lk/\($0)", value: [], lease: lease.id)
            }))
        }
        _ = try await store.commit(Transaction(operations: [.put(key: "/lk/0", value: [1], lease: lease.id)]))
        do {
            try await store.create("/lk/one-too-many", value: [], lease: lease.id)
            Issue.record("key \(limit + 1) was bound to the lease")
        } catch MetadataError.tooLarge(let why) {
            #expect(why.contains("\(limit)"))
        }
        try await store.create("/lk/unleased", value: [])
        try await store.revoke(lease.id)
        #expect(try await store.list(prefix: "/lk/").items.map(\.key) == ["/lk/unleased"])
        await store.shutdown()
    }

    @Test func watchFromNowIsPinnedBeforeItStarts() async throws {
        // Proves a watch "from now" (.zero) sees the changes made after it began, and none from before.
        try await withStore(.embedded) { fixture, store in
            try await store.create("/now/before", value: [])
            let collector = EventCollector(store.watch(.prefix("/now/"), from: .zero))
            try await eventually(seconds: 30) {
                if let failed = collector.error { throw failed }  // a watch that failed never registers
                return await fixture.embeddedStore!.stats().watchers == 1
            }
            try await store.create("/now/a", value: [])
            #expect(try await collector.wait(for: 1).map(\.key) == ["/now/a"])
            collector.stop()
        }
    }

    @Test func aLeaseAndItsKeysSurviveAShortRestart() async throws {
        // Proves a lease whose holder was cut off by a short restart of the role keeps its keys: the store comes
        // back with the lease alive (until the last batch's time plus its TTL, see LeaseRestartTests), so the
        // holder's next keep-alive finds it and renews it for a full TTL.
        try await withStore(.embedded) { fixture, store in
            let granted = ContinuousClock.now
            let lease = try await store.grantLease(ttlSeconds: 10)
            try await store.create("/bookie/1", value: bytes("up"), lease: lease.id)
            try await fixture.restart()
            let client = try fixture.client()
            do {
                #expect(try await retryingUnavailable { try await client.keepAlive(lease.id) } == 10)
                #expect(try await client.get("/bookie/1")?.lease == lease.id)
            } catch MetadataError.leaseExpired {
                // Expired is the right answer only on a machine so stalled that the lease's TTL ran out anyway.
                #expect(ContinuousClock.now - granted >= .seconds(10),
                        "the lease expired \(ContinuousClock.now - granted) after its grant, across a short restart")
            }
        }
    }

    @Test func acknowledgedWritesSurviveAStoreRestart() async throws {
        // Proves what the store acknowledged is on disk: after the store and its server are stopped and
        // reopened on the same directory, every key reads back at the version it was acknowledged with.
        try await withStore(.embedded) { fixture, store in
            var acknowledged: [String: Version] = [:]
            for i in 0..<50 { acknowledged["/d/\(i)"] = try await store.create("/d/\(i)", value: bytes("\(i)")) }
            try await fixture.restart()
            let client = try fixture.client()
            let page = try await retryingUnavailable { try await client.list(prefix: "/d/") }
            #expect(Dictionary(uniqueKeysWithValues: page.items.map { ($0.key, $0.version) }) == acknowledged)
            let next = try await client.create("/d/after", value: [])
            #expect(next > acknowledged.values.max()!, "revisions continue after a restart, never reused")
        }
    }

    @Test func malformedRequestsGetClearErrorsAndTheConnectionGoesOn() async throws {
        // Proves the server answers malformed bodies, unknown operations and keys that bypassed client
        // checks with typed errors on the same connection, which then still serves a good request.
        try await withStore(.embedded) { fixture, store in
            try await store.create("/ok", value: bytes("fine"))
            let socket = try RawSocket(port: fixture.port)
            // RANGE whose body stops inside the key.
            socket.send(rawFrame(op: 0x41, id: 1, body: [0x00, 0x09, 0x2F]))
            let truncated = try socket.receiveFrame()
            #expect(truncated.header.requestID == 1)
            #expect(truncated.header.flagsOrStatus == MetadataStatus.invalidArgument.rawValue)
            #expect("\(MetadataError.decode(status: truncated.header.flagsOrStatus, body: truncated.body))".contains("frame ends early"))
            // An opcode the metadata role does not have (a bookie ADD).
            socket.send(rawFrame(op: 0x01, id: 2, body: []))
            let unknown = try socket.receiveFrame()
            #expect(unknown.header.requestID == 2 && unknown.header.flagsOrStatus == MetadataStatus.invalidArgument.rawValue)
            // A key with a space, which the client library would have refused.
            var buffer = ByteBuffer()
            MetadataRequest.commit(Transaction(operations: [.put(key: "/bad key", value: [], lease: nil)]))
                .encode(requestID: 3, into: &buffer)
            socket.send(Array(buffer.readableBytesView))
            let badKey = try socket.receiveFrame()
            #expect(badKey.header.flagsOrStatus == MetadataStatus.invalidArgument.rawValue)
            // The same connection still answers a good request.
            buffer.clear()
            MetadataRequest.range(.key("/ok"), limit: 1).encode(requestID: 4, into: &buffer)
            socket.send(Array(buffer.readableBytesView))
            let good = try socket.receiveFrame()
            #expect(good.header.requestID == 4 && good.header.flagsOrStatus == MetadataStatus.ok.rawValue)
            guard case .range(let page) = try MetadataReply.decode(op: .range, body: good.body) else {
                Issue.record("not a range reply")
                return
            }
            #expect(page.items.first?.value == bytes("fine"))
        }
    }

    @Test func brokenFramingClosesOnlyThatConnection() async throws {
        // Proves a frame longer than the server's limit closes that connection, and other clients keep being
        // served.
        try await withStore(.embedded) { fixture, store in
            let socket = try RawSocket(port: fixture.port)
            var header: [UInt8] = []
            header.appendBigEndian(UInt32(MetadataServer.requestFrameBytesMax + 1))
            header += [1, 0x41, 0, 0] + [UInt8](repeating: 0, count: 8)
            socket.send(header)
            #expect(socket.isClosedByPeer(), "the connection sending an oversize frame is closed")
            try await store.create("/still", value: [])
            #expect(try await store.get("/still") != nil)
        }
    }
}

func rawFrame(op: UInt8, id: UInt64, body: [UInt8]) -> [UInt8] {
    var frame: [UInt8] = []
    frame.appendBigEndian(UInt32(12 + body.count))
    frame += [1, op, 0, 0]
    frame.appendBigEndian(id)
    return frame + body
}

/// A plain blocking TCP socket to 127.0.0.1, for sending bytes no well-behaved client would send.
final class RawSocket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw MetadataError.unavailable("connect: errno \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private func receive(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { throw MetadataError.unavailable("connection closed or timed out after \(got) bytes") }
            got += n
        }
        return out
    }

    func receiveFrame() throws -> Frame {
        let length = try receive(4)
        let size = Int(length.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        var buffer = ByteBuffer(bytes: length + (try receive(size)))
        let frame = try FrameDecoder.next(from: &buffer, maxFrameBytes: 16 << 20)
        return try #require(frame)
    }

    /// True when the peer closes the connection within the receive timeout.
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}

/// Polls `condition` every 20 ms until it holds; throws after `seconds`.
func eventually(seconds: Double, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: "waiting for a condition", seconds: seconds) }
        try await Task.sleep(for: .milliseconds(20))
    }
}
