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

    /// Sends a request encoded by `encode` (given its request id) and waits for its answer. It fails with
    /// `ConnectionTimedOut` once the connection has been silent for `timeout`. While other answers keep arriving
    /// the peer is alive, only busy (thousands of streams opening at once), so the request keeps waiting, up to
    /// `patience`: sending it again would only add to the work it waits behind, and store a write twice.
    func send(timeout: Duration, patience: ContinuousClock.Instant? = nil,
              _ encode: @escaping @Sendable (UInt64, inout ByteBuffer) -> Void) async throws -> Frame {
        let promise = channel.eventLoop.makePromise(of: Frame.self)
        let timer = ReplyTimer(eventLoop: channel.eventLoop)
        let heard = heard
        timer.arm(after: timeout) { () -> Duration? in
            let quiet = heard.since
            guard let patience, quiet < timeout, ContinuousClock.now < patience else {
                promise.fail(ConnectionTimedOut(timeout: timeout))
                return nil
            }
            return min(timeout - quiet, patience - ContinuousClock.now)
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        outbox.send(Outbound(encode: encode, waiter: .promise(promise)))
        return try await promise.futureResult.get()
    }

    func close() async { try? await channel.close() }
}

/// One request's timer: `check` runs when it fires and either ends the wait (nil) or names when to look again.
/// Lives on the connection's event loop; `arm` and `cancel` may come from any thread.
final class ReplyTimer: Sendable {
    private struct Timing {
        var scheduled: Scheduled<Void>?
        var cancelled = false
    }
    private let eventLoop: any EventLoop
    private let timing: NIOLoopBoundBox<Timing?>

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        timing = .makeEmptyBox(valueType: Timing.self, eventLoop: eventLoop)
    }

    func arm(after delay: Duration, _ check: @escaping @Sendable () -> Duration?) {
        eventLoop.execute { self.schedule(after: delay, check) }
    }

    private func schedule(after delay: Duration, _ check: @escaping @Sendable () -> Duration?) {
        guard timing.value?.cancelled != true else { return }
        let (seconds, attoseconds) = delay.components
        let scheduled = eventLoop.scheduleTask(in: .nanoseconds(max(1, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))) {
            if let again = check() { self.schedule(after: again, check) }
        }
        timing.value = Timing(scheduled: scheduled)
    }

    func cancel() {
        eventLoop.execute {
            self.timing.value?.scheduled?.cancel()
            self.timing.value = Timing(scheduled: nil, cancelled: true)
        }
    }
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
