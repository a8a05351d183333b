import DistributedLog
import DLogTestSupport
import DLogWire
import Foundation
import Glibc
import NIOCore
import Synchronization
import Testing

/// A listening socket on loopback that accepts and counts connections and never answers: a proxy that has
/// stalled, as far as a client can tell.
private final class SilentListener: Sendable {
    let port: Int
    private let fd: Int32
    private let accepted = Atomic<Int>(0)
    private let held = Mutex<[Int32]>([])

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 4096) == 0 else {
            Glibc.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }  // closed
                accepted.add(1, ordering: .relaxed)
                held.withLock { $0.append(client) }
            }
        }
    }

    var connections: Int { accepted.load(ordering: .relaxed) }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
        for client in held.withLock({ $0 }) { Glibc.close(client) }
    }
}

/// A proxy that answers every write at once, except those to the stream "slow", which it answers after
/// `slowAnswer` or never (a request stuck behind slow work, on a connection that is otherwise fine). Counts the
/// connections that carried requests (a connect the client gave up on, on a loaded machine, carries none) and
/// the requests to "slow".
private final class SelectiveProxy: Sendable {
    let server: FrameServer
    let port: Int
    private let connected: Counter
    private let slowOnes: Counter

    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    init(slowAnswer: Duration? = nil) throws {
        let connected = Counter(), slowOnes = Counter()
        self.connected = connected
        self.slowOnes = slowOnes
        server = try FrameServer(host: "127.0.0.1", port: 0, threads: 1, maxFrameBytes: 1 << 20) {
            Handler(connected, slowOnes, slowAnswer)
        }
        port = server.localAddress!.port!
    }

    var connections: Int { connected.value.load(ordering: .relaxed) }
    var slowRequests: Int { slowOnes.value.load(ordering: .relaxed) }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = Frame
        typealias OutboundOut = ByteBuffer
        private var written: Int64 = 0
        private let connected: Counter
        private let slowOnes: Counter
        private let slowAnswer: Duration?
        private var counted = false

        init(_ connected: Counter, _ slowOnes: Counter, _ slowAnswer: Duration?) {
            self.connected = connected
            self.slowOnes = slowOnes
            self.slowAnswer = slowAnswer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            if !counted {
                counted = true
                connected.value.add(1, ordering: .relaxed)
            }
            guard let request = try? ProxyRequest.decode(frame) else { return }
            written += 1
            var buffer = context.channel.allocator.buffer(capacity: 64)
            ProxyReply.written(DLSN(segment: 1, entry: written, slot: 0)).encode(op: request.op, requestID: frame.header.requestID, into: &buffer)
            guard request.stream == "slow" else { return context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
            slowOnes.value.add(1, ordering: .relaxed)
            guard let slowAnswer else { return }
            let (seconds, attoseconds) = slowAnswer.components
            let answer = NIOLoopBound((context, buffer), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
                let (context, buffer) = answer.value
                context.writeAndFlush(NIOAny(buffer), promise: nil)
            }
        }
    }
}

private final class Flag: Sendable {
    private let state = Mutex(false)
    func set() { state.withLock { $0 = true } }
    var isSet: Bool { state.withLock { $0 } }
}

@Suite struct ProxyClientConnectTests {
    @Test func aRequestThatTimesOutOnAnAnsweringConnectionKeepsTheConnection() async throws {
        // Proves one request timing out on a connection that keeps answering the others (the proxy is slow on
        // one stream, not gone) leaves that connection and everything in flight on it alone: one timeout used to
        // close it, failing every request on it at once (with thousands of streams opening, a cascade of refusals).
        let proxy = try SelectiveProxy()
        defer { proxy.server.close() }
        var options = ProxyClient.Options()
        // One attempt of the slow write: it times out once (3 s), and the retry window is over by then.
        options.requestTimeout = .seconds(3)
        options.retryFor = .milliseconds(2_500)
        let client = ProxyClient(proxies: ["127.0.0.1:\(proxy.port)"], options: options)
        let slowEnded = Flag()
        let slow = Task {
            defer { slowEnded.set() }
            return try await client.write("slow", [0])
        }
        // Writes to another stream go on, on the same connection, until 20 more after the slow one timed out.
        let (written, longestGap) = try await withTimeout(60, "writes beside a request that times out") {
            var count = 0, after = 0
            var last = ContinuousClock.now, longest = Duration.zero
            while after < 20 {
                _ = try await client.write("fast", [1])
                count += 1
                if slowEnded.isSet { after += 1 }
                longest = max(longest, ContinuousClock.now - last)
                last = .now
                try await Task.sleep(for: .milliseconds(5))
            }
            return (count, longest)
        }
        await #expect(throws: ProxyFailure.self) { _ = try await slow.value }
        await client.shutdown()
        #expect(written >= 20)
        // A connection that heard nothing for a whole request timeout is rightly taken for dead: only a machine
        // stalled that long (a gap between answers of half the timeout or more) may show a second connection.
        let stalled = longestGap >= options.requestTimeout / 2
        #expect(proxy.connections == 1 || stalled && proxy.connections == 2,
                "\(proxy.connections) connections (longest gap between answers \(longestGap)): a timeout closed a connection that was answering")
    }

    @Test func aRequestWaitsPastItsTimeoutWhileItsConnectionAnswersOthers() async throws {
        // Proves a request behind slow work at a live proxy (its answer takes three request timeouts; other
        // answers keep arriving) is answered, and sent once: at its timeout it used to be sent again, which added
        // to the work it waited behind (thousands of streams opening at once) and could store a write twice.
        let proxy = try SelectiveProxy(slowAnswer: .seconds(5))
        defer { proxy.server.close() }
        var options = ProxyClient.Options()
        options.requestTimeout = .seconds(2)
        options.retryFor = .seconds(30)
        let client = ProxyClient(proxies: ["127.0.0.1:\(proxy.port)"], options: options)
        let slowEnded = Flag()
        let slow = Task {
            defer { slowEnded.set() }
            return try await client.write("slow", [0])
        }
        let longestGap = try await withTimeout(90, "writes beside a slow request") {
            var last = ContinuousClock.now, longest = Duration.zero
            while !slowEnded.isSet {
                _ = try await client.write("fast", [1])
                longest = max(longest, ContinuousClock.now - last)
                last = .now
                try await Task.sleep(for: .milliseconds(20))
            }
            return longest
        }
        _ = try await slow.value
        await client.shutdown()
        // A connection that heard nothing for a whole request timeout is rightly taken for dead: only then may the
        // slow write have gone out again, on a second connection. The gap measured here understates that silence:
        // it runs from when this task saw an answer, and while the machine holds this task after an answer
        // arrives, no fast write is in flight and the connection hears nothing. So, as in the test above, a gap of
        // half the timeout or more counts as a stall. (The defect answered every 20 ms and still resent.)
        let stalled = longestGap >= options.requestTimeout / 2
        #expect(proxy.slowRequests == 1 || stalled, "the slow write was sent \(proxy.slowRequests) times (longest gap \(longestGap))")
        #expect(proxy.connections == 1 || stalled, "\(proxy.connections) connections (longest gap \(longestGap))")
    }

    @Test func manyRequestsAtOnceMakeOneConnectionNotOneEach() async throws {
        // Proves a client with 300 requests in flight to one proxy connects to it once per time it needs a
        // connection, not once per request: each used to connect on its own, so after a dropped connection
        // thousands of connects at once timed out ("Connect timeout (5 s)") and the requests were refused.
        let listener = try SilentListener()
        defer { listener.close() }
        var options = ProxyClient.Options()
        options.requestTimeout = .milliseconds(500)
        options.retryFor = .milliseconds(800)
        let client = ProxyClient(proxies: ["127.0.0.1:\(listener.port)"], options: options)
        await withTaskGroup(of: Void.self) { group in
            for n in 0..<300 { group.addTask { _ = try? await client.write("s-\(n)", [1]) } }
        }
        await client.shutdown()
        // A connection per round of timeouts (at most a few within 0.8 s), never one per request.
        #expect(listener.connections >= 1 && listener.connections <= 10, "\(listener.connections) connections for 300 requests")
    }
}
