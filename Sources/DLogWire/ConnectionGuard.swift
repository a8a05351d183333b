import NIOCore
import Synchronization

/// What one role's port lets its clients hold (docs/security.md, "Limits"): a hostile or broken client can tie
/// up a connection slot, an unfinished frame's memory and a timer, and nothing more, for a bounded time.
public struct ConnectionLimits: Sendable, Hashable {
    /// Connections open at once; one more is closed at once, with a log line.
    public var connectionsMax = 10_000
    /// A connection on which nothing was read or written this long is closed.
    public var idleTimeout: Duration = .seconds(600)
    /// A frame whose first byte arrived this long ago and whose last has not is closed with its connection.
    public var partialFrameTimeout: Duration = .seconds(30)
    /// Bytes of unfinished frames across all connections: the connection whose bytes would pass it is closed.
    public var unfinishedFrameBytesMax = 256 << 20

    public init() {}
}

/// The state the connections of one port share: how many are open, and the bytes of their unfinished frames.
public final class ConnectionBudget: Sendable {
    public let limits: ConnectionLimits
    let connections = Atomic(0)
    let unfinishedBytes = Atomic(0)
    /// Where a refusal or a closed connection is reported (the role's log); at most one line a second of each
    /// kind reaches it, with the count of those left out.
    private let report: @Sendable (String) -> Void
    private let reported = Mutex<[String: (at: ContinuousClock.Instant, skipped: Int)]>([:])

    public init(limits: ConnectionLimits, report: @escaping @Sendable (String) -> Void) {
        self.limits = limits
        self.report = report
    }

    public var openConnections: Int { connections.load(ordering: .relaxed) }
    public var unfinishedFrameBytes: Int { unfinishedBytes.load(ordering: .relaxed) }

    /// Takes a slot for a new connection; false (and a report) when every slot is taken.
    func admit(peer: String) -> Bool {
        let after = connections.wrappingAdd(1, ordering: .relaxed).newValue
        guard after <= limits.connectionsMax else {
            connections.wrappingSubtract(1, ordering: .relaxed)
            say("connection limit", "connection limit (connections_max = \(limits.connectionsMax)) reached; refusing \(peer)")
            return false
        }
        return true
    }

    func release() { connections.wrappingSubtract(1, ordering: .relaxed) }

    /// Moves a connection's held bytes by `delta`; false when that would pass the bound (nothing is held then).
    func hold(_ delta: Int) -> Bool {
        let after = unfinishedBytes.wrappingAdd(delta, ordering: .relaxed).newValue
        if delta > 0 && after > limits.unfinishedFrameBytesMax {
            unfinishedBytes.wrappingSubtract(delta, ordering: .relaxed)
            return false
        }
        return true
    }

    func say(_ kind: String, _ line: String) {
        let now = ContinuousClock.now
        let skipped: Int? = reported.withLock { seen in
            if let last = seen[kind], now - last.at < .seconds(1) {
                seen[kind]!.skipped += 1
                return nil
            }
            defer { seen[kind] = (now, 0) }
            return seen[kind]?.skipped ?? 0
        }
        guard let skipped else { return }
        report(skipped > 0 ? "\(line) (and \(skipped) more like it in the last second)" : line)
    }
}

/// First in every served connection's pipeline after TLS: counts the connection against its port's slots,
/// follows frame boundaries in the bytes as they pass (only the 4-byte lengths are read; the bytes go on as they
/// are), holds each unfinished frame's bytes against the port's bound, and closes a connection that stays idle or
/// leaves a frame unfinished too long. Each tick checks both, every half of the shorter timeout.
final class ConnectionGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    let budget: ConnectionBudget
    let peer: String
    private var admitted = false
    /// The current frame's length field: bytes of it seen (1–3 while it is split over reads) and their value.
    private var lengthBytes = 0
    private var length: UInt32 = 0
    /// Bytes of the current frame's body still to come; 0 between frames.
    private var remaining = 0
    /// Bytes of the current, unfinished frame seen so far (what the frame decoder behind holds for it), all held
    /// against the budget.
    private var held = 0
    private var frameStarted: NIODeadline?
    private var lastActivity = NIODeadline.now()
    private var tick: RepeatedTask?

    init(budget: ConnectionBudget, peer: String) {
        self.budget = budget
        self.peer = peer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard budget.admit(peer: peer) else {
            context.close(promise: nil)
            return
        }
        admitted = true
        let limits = budget.limits
        let period = TimeAmount(min(limits.idleTimeout, limits.partialFrameTimeout) / 2)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        tick = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            let (handler, context) = bound.value
            handler.check(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tick?.cancel()
        tick = nil
        if admitted {
            admitted = false
            budget.release()
            _ = budget.hold(-held)
            held = 0
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Self.unwrapInboundIn(data)
        let now = NIODeadline.now()
        lastActivity = now
        let (unfinished, startedNew) = follow(bytes)
        guard budget.hold(unfinished - held) else {
            budget.say("unfinished frames", "unfinished frames of all connections would pass unfinished_frame_bytes_max "
                        + "(\(budget.limits.unfinishedFrameBytesMax) bytes); closing \(peer)")
            return context.close(promise: nil)
        }
        held = unfinished
        if unfinished == 0 {
            frameStarted = nil
        } else if startedNew || frameStarted == nil {
            frameStarted = now
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = .now()
        context.write(data, promise: promise)
    }

    /// Moves the frame boundaries over `bytes`. Returns the bytes of the unfinished frame they end in (0 when they
    /// end on a boundary), and whether that frame began in them.
    private func follow(_ bytes: ByteBuffer) -> (unfinished: Int, startedNew: Bool) {
        var index = bytes.readerIndex
        let end = bytes.writerIndex
        var current = held
        var startedNew = false
        while index < end {
            if remaining > 0 {
                let n = min(remaining, end - index)
                remaining -= n
                index += n
                current = remaining == 0 ? 0 : current + n
                continue
            }
            if lengthBytes == 0 {
                startedNew = true
                current = 0
                if end - index >= 4 {
                    remaining = Int(bytes.getInteger(at: index, as: UInt32.self)!)
                    index += 4
                    current = remaining == 0 ? 0 : 4
                    continue
                }
            }
            length = length << 8 | UInt32(bytes.getInteger(at: index, as: UInt8.self)!)
            lengthBytes += 1
            index += 1
            current += 1
            if lengthBytes == 4 {
                remaining = Int(length)
                (length, lengthBytes) = (0, 0)
                if remaining == 0 { current = 0 }
            }
        }
        return (current, startedNew)
    }

    private func check(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        let limits = budget.limits
        if let started = frameStarted, now - started > TimeAmount(limits.partialFrameTimeout) {
            budget.say("partial frame", "a frame from \(peer) was left unfinished for over \(limits.partialFrameTimeout) "
                        + "(partial_frame_timeout_s); closing the connection")
            context.close(promise: nil)
        } else if now - lastActivity > TimeAmount(limits.idleTimeout) {
            budget.say("idle", "connection from \(peer) idle for over \(limits.idleTimeout) (idle_timeout_s); closing it")
            context.close(promise: nil)
        }
    }
}
