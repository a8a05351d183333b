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
        var timeout: Duration
        var patience: ContinuousClock.Instant?
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
    /// The connection's handler times requests out (`FrameClientHandler.sweepOverdue`), a few times per timeout.
    func send(timeout: Duration, patience: ContinuousClock.Instant? = nil,
              _ encode: @escaping @Sendable (UInt64, inout ByteBuffer) -> Void) async throws -> Frame {
        try await withCheckedThrowingContinuation { answer in
            send(timeout: timeout, patience: patience, encode) { answer.resume(with: $0) }
        }
    }

    /// Like `send`, handing the answer (or the failure) to `reply` on the connection's event loop.
    func send(timeout: Duration, patience: ContinuousClock.Instant? = nil,
              _ encode: @escaping @Sendable (UInt64, inout ByteBuffer) -> Void,
              reply: @escaping @Sendable (Result<Frame, any Error>) -> Void) {
        outbox.send(Outbound(encode: encode, waiter: .callback(reply), timeout: timeout, patience: patience))
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

/// Matches answers to requests, and times requests out by a sweep over their deadlines a few times per timeout
/// rather than by a timer each: arming and cancelling a timer per request (two hops to the event loop, and a
/// search of its timer heap at each cancel) cost a client sending 17,000 requests a second more than encoding
/// them did.
final class FrameClientHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    /// A batch from the connection's `ChannelOutbox`.
    typealias OutboundIn = [FrameConnection.Outbound]
    typealias OutboundOut = ByteBuffer

    private struct Deadline {
        var id: UInt64
        var at: NIODeadline
        var timeout: Duration
        var patience: ContinuousClock.Instant?
    }

    private var pending = PendingReplies<Frame>()
    private let heard: Heard
    /// Requests in send order, with their deadlines; answered ones leave from the front at each answer, the rest
    /// at the sweep.
    private var deadlines = CircularBuffer<Deadline>()
    private var sweep: (task: RepeatedTask, every: TimeAmount)?

    init(heard: Heard) { self.heard = heard }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.task.cancel()
        sweep = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = context.channel.allocator.buffer(capacity: 256)
        let now = NIODeadline.now()
        for out in unwrapOutboundIn(data) {
            guard let id = pending.add(out.waiter, closedError: ConnectionLost()) else { continue }
            out.encode(id, &buffer)
            let timeout = TimeAmount(out.timeout)
            deadlines.append(Deadline(id: id, at: now + timeout, timeout: out.timeout, patience: out.patience))
            sweepAtLeast(every: timeout, context: context)
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
        while let front = deadlines.first, !pending.isWaiting(front.id) { deadlines.removeFirst() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        pending.failAll(ConnectionLost())
        deadlines.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        pending.failAll(error)
        deadlines.removeAll()
        context.close(promise: nil)
    }

    /// Sweeps a quarter of the shortest timeout seen apart (10 ms at least), so a request fails between its
    /// timeout and a quarter more.
    private func sweepAtLeast(every timeout: TimeAmount, context: ChannelHandlerContext) {
        let every = max(TimeAmount.milliseconds(10), .nanoseconds(timeout.nanoseconds / 4))
        if let sweep, sweep.every <= every { return }
        sweep?.task.cancel()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        sweep = (context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
            handler.value.sweepOverdue()
        }, every)
    }

    /// A request past its deadline fails with `ConnectionTimedOut` when the connection has been silent for its
    /// timeout, or it has no patience, or its patience is over. Otherwise the peer is alive, only busy (thousands
    /// of streams opening at once), and the request keeps waiting: sending it again would only add to the work it
    /// waits behind, and store a write twice.
    private func sweepOverdue() {
        let now = NIODeadline.now(), clock = ContinuousClock.now
        let quiet = heard.since
        var kept = CircularBuffer<Deadline>(initialCapacity: deadlines.count)
        while let request = deadlines.popFirst() {
            guard pending.isWaiting(request.id) else { continue }
            if request.at > now
                || request.patience.map({ quiet < request.timeout && clock < $0 }) == true {
                kept.append(request)
            } else {
                pending.take(request.id)?.fail(ConnectionTimedOut(timeout: request.timeout))
            }
        }
        deadlines = kept
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
