import DLogWire
import NIOCore
import NIOPosix
import Synchronization

/// A pipelined connection speaking the common frame: many requests in flight, answers matched by request id,
/// each request bounded by a timeout. Used by the proxy client.
final class FrameConnection: Sendable {
    struct Outbound: Sendable {
        var encode: @Sendable (UInt64, inout ByteBuffer) -> Void
        var waiter: ReplyWaiter<Frame>
    }

    let channel: Channel
    private let outbox: ChannelOutbox<Outbound>
    /// When a frame last arrived (nanoseconds of the continuous clock since the connection was made).
    private let heard: Heard

    static func connect(host: String, port: Int, group: EventLoopGroup, timeout: Duration,
                        tls: TLSIdentity?) async throws -> FrameConnection {
        let heard = Heard()
        let connected = ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: 64 << 20)))
                    try channel.pipeline.syncOperations.addHandler(FrameClientHandler(heard: heard))
                }
            }
            .connect(host: host, port: port)
        let tlsFailure = TLSFailureRecord()
        let channel = try await TLSIdentity.secure(connected, with: tls, host: host, port: port, record: tlsFailure).get()
        return FrameConnection(channel: channel, heard: heard, tlsFailure: tlsFailure)
    }

    private init(channel: Channel, heard: Heard, tlsFailure: TLSFailureRecord) {
        self.channel = channel
        self.heard = heard
        outbox = ChannelOutbox(channel: channel) { $0.waiter.fail(tlsFailure.error ?? ConnectionLost()) }
    }

    var isActive: Bool { channel.isActive }

    /// Whether nothing arrived on this connection for `interval`: a request that timed out on a connection that
    /// answers others only waited behind slow work at the peer (the connection is fine); on a silent one, the
    /// peer or the path to it is gone.
    func isSilent(for interval: Duration) -> Bool { heard.since > interval }

    /// Sends a request encoded by `encode` (given its request id) and waits at most `timeout` for the answer.
    func send(timeout: Duration, _ encode: @escaping @Sendable (UInt64, inout ByteBuffer) -> Void) async throws -> Frame {
        let promise = channel.eventLoop.makePromise(of: Frame.self)
        let (seconds, attoseconds) = timeout.components
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
            promise.fail(ConnectionTimedOut(timeout: timeout))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        outbox.send(Outbound(encode: encode, waiter: .promise(promise)))
        return try await promise.futureResult.get()
    }

    func close() async { try? await channel.close() }
}

struct ConnectionTimedOut: Error, CustomStringConvertible {
    var timeout: Duration
    var description: String { "no answer within \(timeout)" }
}

struct ConnectionLost: Error, CustomStringConvertible {
    var description: String { "the connection closed" }
}

final class FrameClientHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    /// A batch from the connection's `ChannelOutbox`.
    typealias OutboundIn = [FrameConnection.Outbound]
    typealias OutboundOut = ByteBuffer

    private var pending = PendingReplies<Frame>()
    private let heard: Heard

    init(heard: Heard) { self.heard = heard }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = context.channel.allocator.buffer(capacity: 256)
        for out in unwrapOutboundIn(data) {
            guard let id = pending.add(out.waiter, closedError: ConnectionLost()) else { continue }
            out.encode(id, &buffer)
        }
        if buffer.readableBytes > 0 {
            context.write(wrapOutboundOut(buffer), promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        heard.now()
        pending.take(frame.header.requestID)?.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pending.failAll(ConnectionLost())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        pending.failAll(error)
        context.close(promise: nil)
    }
}

/// The last time a connection heard from its peer, set on its event loop and read from any thread.
final class Heard: Sendable {
    private let start = ContinuousClock.now
    private let nanoseconds = Atomic<Int64>(0)

    func now() {
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        nanoseconds.store(seconds * 1_000_000_000 + attoseconds / 1_000_000_000, ordering: .relaxed)
    }

    /// Time since the peer was last heard from (or since the connection was made).
    var since: Duration { ContinuousClock.now - (start + .nanoseconds(nanoseconds.load(ordering: .relaxed))) }
}
