import DequeModule
import DLogWire
import NIOCore
import NIOPosix
import Synchronization

/// A pipelined connection to one bookie: many requests in flight, answers matched by request id.
/// Used by tests and dlog-bench; the quorum client builds on it.
public final class BookieClient: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var status: BookieStatus
        public var message: String
        public var description: String { "\(status): \(message)" }
    }

    public let channel: Channel
    private let ownsGroup: MultiThreadedEventLoopGroup?
    private let closed = Atomic(false)
    private let outbox: ChannelOutbox<ClientHandler.Outbound>

    /// Connects to `host:port`. Pass a group to share event loops between many clients.
    /// With a `requestTimeout`, a connection on which some request went unanswered that long (a long poll: its
    /// own wait plus that long) is closed, failing everything on it: a hung bookie (stopped, partitioned, stuck
    /// disk) then fails fast for every ledger using it, instead of collecting requests forever.
    /// With `tls`, the connection speaks TLS and the bookie's certificate must name `host`.
    public static func connect(host: String, port: Int, group: EventLoopGroup? = nil,
                               maxFrameBytes: Int = 16 << 20, connectTimeout: Duration = .seconds(5),
                               requestTimeout: Duration? = nil, tls: TLSIdentity? = nil) async throws -> BookieClient {
        let own = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        do {
            let connected = ClientBootstrap(group: group ?? own!)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(TimeAmount(connectTimeout))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ClientHandler(requestTimeout: requestTimeout.map(TimeAmount.init), maxFrameBytes: maxFrameBytes))
                    }
                }
                .connect(host: host, port: port)
            let tlsFailure = TLSFailureRecord()
            let channel = try await TLSIdentity.secure(connected, with: tls, host: host, port: port, record: tlsFailure).get()
            return BookieClient(channel: channel, ownsGroup: own, tlsFailure: tlsFailure)
        } catch {
            try? await own?.shutdownGracefully()
            throw error
        }
    }

    private init(channel: Channel, ownsGroup: MultiThreadedEventLoopGroup?, tlsFailure: TLSFailureRecord) {
        self.channel = channel
        outbox = ChannelOutbox(channel: channel) { $0.waiter.fail(tlsFailure.error ?? ConnectionClosed()) }
        self.ownsGroup = ownsGroup
    }

    public func close() async {
        closed.store(true, ordering: .releasing)
        try? await channel.close()
        try? await ownsGroup?.shutdownGracefully()
    }

    /// Sends a request and waits for its response (a `.failed` response is returned, not thrown).
    public func send(_ request: BookieRequest) async throws -> BookieResponse {
        try await sendFuture(request).get()
    }

    /// Sends and calls `completion` with the answer, on the connection's event loop. After `close` it is called
    /// at once, on this thread: the event loops may be gone, and a callback left for one would never run. No
    /// promise or future is made: this is the cheap way to keep many requests in flight.
    public func send(_ request: BookieRequest,
                     then completion: @escaping @Sendable (Result<BookieResponse, any Error>) -> Void) {
        if isClosed { return completion(.failure(ConnectionClosed())) }
        outbox.send(ClientHandler.Outbound(request: request, waiter: .callback(completion), answerWithin: nil))
    }

    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Sends, failing this request alone with `LedgerError.unreachable` (naming `bookie`) when no answer came
    /// within `timeout`: the connection's handler keeps the deadline, with no timer of its own per request.
    func sendFuture(_ request: BookieRequest, answerWithin timeout: Duration,
                    naming bookie: BookieID) -> EventLoopFuture<BookieResponse> {
        if closed.load(ordering: .acquiring) { return channel.eventLoop.makeFailedFuture(ConnectionClosed()) }
        let promise = channel.eventLoop.makePromise(of: BookieResponse.self)
        outbox.send(ClientHandler.Outbound(request: request, waiter: .promise(promise),
                                           answerWithin: .init(timeout: timeout, bookie: bookie)))
        return promise.futureResult
    }

    /// `sendFuture(_:answerWithin:naming:)` with the answer (or the failure) given to `completion` on the
    /// connection's event loop, with no promise or future made.
    func send(_ request: BookieRequest, answerWithin timeout: Duration, naming bookie: BookieID,
              then completion: @escaping @Sendable (Result<BookieResponse, any Error>) -> Void) {
        if isClosed { return completion(.failure(ConnectionClosed())) }
        outbox.send(ClientHandler.Outbound(request: request, waiter: .callback(completion),
                                           answerWithin: .init(timeout: timeout, bookie: bookie)))
    }

    /// Sends without waiting: for pipelined load. Requests from many tasks are gathered in an outbox and
    /// written once per event-loop turn (`ChannelOutbox`).
    public func sendFuture(_ request: BookieRequest) -> EventLoopFuture<BookieResponse> {
        // After close the event loops may be gone: a promise made on one would never complete.
        if closed.load(ordering: .acquiring) { return channel.eventLoop.makeFailedFuture(ConnectionClosed()) }
        let promise = channel.eventLoop.makePromise(of: BookieResponse.self)
        outbox.send(ClientHandler.Outbound(request: request, waiter: .promise(promise), answerWithin: nil))
        return promise.futureResult
    }

    // Conveniences that throw on a failed status.

    public func add(key: MasterKey, entry: [UInt8], recovery: Bool = false) async throws {
        let r = try await send(.add(masterKey: key, entry: entry, recovery: recovery))
        if case .failed(let s, let m) = r { throw Failure(status: s, message: m) }
    }

    public func read(ledger: LedgerID, entry: EntryID, fenceWith key: MasterKey? = nil) async throws -> [UInt8] {
        switch try await send(.read(ledger: ledger, entry: entry, fenceWith: key)) {
        case .entry(let bytes): return bytes
        case .failed(let s, let m): throw Failure(status: s, message: m)
        default: throw Failure(status: .badRequest, message: "unexpected response to READ")
        }
    }

    public func info() async throws -> String {
        switch try await send(.getInfo) {
        case .info(let json): return json
        case .failed(let s, let m): throw Failure(status: s, message: m)
        default: throw Failure(status: .badRequest, message: "unexpected response to GET_INFO")
        }
    }

    /// The master key the bookie holds for `ledger` (LEDGER_KEY).
    public func ledgerKey(_ ledger: LedgerID) async throws -> MasterKey {
        switch try await send(.ledgerKey(ledger: ledger)) {
        case .masterKey(let key): return key
        case .failed(let s, let m): throw Failure(status: s, message: m)
        default: throw Failure(status: .badRequest, message: "unexpected response to LEDGER_KEY")
        }
    }

    /// Every entry of `ledger` the bookie stores, as ranges, asking page after page (`rangesPerPage` each)
    /// until the list is complete. Throws `Failure` with NO_LEDGER when the bookie holds nothing of it.
    public func storedEntries(of ledger: LedgerID, rangesPerPage: UInt32 = 16_384) async throws -> [EntryRange] {
        var all: [EntryRange] = []
        var from = EntryID(0)
        while true {
            switch try await send(.listEntries(ledger: ledger, from: from, rangesMax: rangesPerPage)) {
            case .entries(let ranges, let next):
                all += ranges
                guard let next else { return all }
                guard next > from else { throw Failure(status: .badRequest, message: "LIST_ENTRIES did not move on from \(from)") }
                from = next
            case .failed(let s, let m): throw Failure(status: s, message: m)
            default: throw Failure(status: .badRequest, message: "unexpected response to LIST_ENTRIES")
            }
        }
    }
}

public struct ConnectionClosed: Error, CustomStringConvertible {
    public var description: String { "connection to the bookie closed" }
}

/// Assigns request ids, keeps the promises, and completes them as responses arrive in any order. With a
/// request timeout it checks, a few times per timeout, for a request left unanswered too long, and then closes
/// the connection (which fails every request on it with the reason).
final class ClientHandler: ChannelDuplexHandler {
    struct Outbound: Sendable {
        var request: BookieRequest
        var waiter: ReplyWaiter<BookieResponse>
        /// Fail this request alone, as `unreachable`, when no answer came within this long.
        var answerWithin: AnswerWithin?
    }

    struct AnswerWithin: Sendable {
        var timeout: Duration
        /// Named in the failure.
        var bookie: BookieID
    }

    /// The bytes as read: the handler splits them into frames itself (`FrameSplitter`).
    typealias InboundIn = ByteBuffer
    /// A batch from the connection's `ChannelOutbox`.
    typealias OutboundIn = [Outbound]
    typealias OutboundOut = ByteBuffer

    let requestTimeout: TimeAmount?
    private var pending = PendingReplies<BookieResponse>()
    /// Requests by deadline, oldest first (ids of answered ones are dropped when they reach the front); long
    /// polls, whose deadlines do not follow send order, apart.
    private var deadlines = Deque<(id: UInt64, deadline: NIODeadline)>()
    private var pollDeadlines: [UInt64: NIODeadline] = [:]
    private var sweep: RepeatedTask?
    /// Requests that fail alone when unanswered by their deadline, and the one timer that serves them: a timer
    /// per request, armed and cancelled for every read and long poll, was a tenth of a tailing reader's CPU.
    /// Answered requests leave at once (a queue that kept them until their deadline held, for a tailing reader,
    /// 5 s of answered polls, through which every read's shorter deadline was inserted).
    private var expiries = RequestDeadlines<AnswerWithin>()
    private let expiryTimer = LoopTimer()

    private var splitter: FrameSplitter

    init(requestTimeout: TimeAmount? = nil, maxFrameBytes: Int = 16 << 20) {
        self.requestTimeout = requestTimeout
        splitter = FrameSplitter(maxFrameBytes: maxFrameBytes)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let requestTimeout else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let every = TimeAmount.nanoseconds(max(requestTimeout.nanoseconds / 4, 10_000_000))
        sweep = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
            let (handler, context) = bound.value
            handler.closeIfOverdue(context: context)
        }
    }

    /// Encodes a batch of requests into one buffer (a new one past `spillBytes`, so a batch of large adds is
    /// not copied into one huge buffer as it grows).
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let batch = unwrapOutboundIn(data)
        let now = requestTimeout == nil ? nil : NIODeadline.now()
        // Sized for the batch up front: a buffer grown request by request was reallocated and copied as it went.
        var capacity = 0
        for i in batch.indices { capacity += batch[i].request.encodedSizeEstimate }
        var buffer = context.channel.allocator.buffer(capacity: min(capacity, Self.spillBytes + (64 << 10)))
        // Each request is read in place: binding it (`for out in batch`) copied its entry and its waiter once
        // more, a retain and a release each, per request.
        for i in batch.indices {
            guard let id = pending.add(batch[i].waiter, closedError: ConnectionClosed()) else { continue }
            if let requestTimeout, let now {
                if case .readLAC(_, let poll?) = batch[i].request {
                    pollDeadlines[id] = now + requestTimeout + .milliseconds(Int64(poll.timeoutMilliseconds))
                } else {
                    deadlines.append((id, now + requestTimeout))
                }
            }
            if let within = batch[i].answerWithin {
                let deadline = (now ?? NIODeadline.now()) + TimeAmount(within.timeout)
                if let arm = expiries.add(id, within, by: deadline) {
                    armExpiryTimer(at: arm, context: context)
                }
            }
            batch[i].request.encode(requestID: id, into: &buffer)
            if buffer.readableBytes >= Self.spillBytes {
                context.write(wrapOutboundOut(buffer), promise: nil)
                buffer = context.channel.allocator.buffer(capacity: 0)
            }
        }
        if buffer.readableBytes > 0 { context.write(wrapOutboundOut(buffer), promise: nil) }
        promise?.succeed(())
    }

    static let spillBytes = 256 << 10

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try splitter.split(unwrapInboundIn(data)) { answer($0) }
        } catch {
            // A frame that breaks the rules: nothing after it on this connection can be trusted.
            failAll(error)
            context.close(promise: nil)
        }
    }

    private func answer(_ frame: Frame) {
        guard let waiter = pending.take(frame.header.requestID) else { return }
        // Only long polls have a deadline here: most answers (adds) skip the hash of a lookup in an empty table.
        if !pollDeadlines.isEmpty { pollDeadlines[frame.header.requestID] = nil }
        expiries.answered(frame.header.requestID)
        do {
            waiter.succeed(try BookieResponse.decode(frame).1)
        } catch {
            waiter.fail(error)
        }
    }

    private func armExpiryTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        expiryTimer.arm(at: deadline, on: context.eventLoop) { self.expire(context: context) }
    }

    /// Fails the requests whose deadline passed unanswered; those answered meanwhile are no longer pending.
    private func expire(context: ChannelHandlerContext) {
        let (due, next) = expiries.fire(now: .now())
        for (id, within) in due {
            guard let waiter = pending.take(id) else { continue }
            pollDeadlines[id] = nil
            waiter.fail(LedgerError.unreachable(within.bookie, "no answer within \(within.timeout)"))
        }
        if let next { armExpiryTimer(at: next, context: context) }
    }

    private func closeIfOverdue(context: ChannelHandlerContext) {
        guard !pending.closed, let requestTimeout else { return }
        while let front = deadlines.first, !pending.isWaiting(front.id) { deadlines.removeFirst() }
        let now = NIODeadline.now()
        let late = (deadlines.first.map { $0.deadline < now } ?? false) || pollDeadlines.values.contains { $0 < now }
        guard late else { return }
        failAll(RequestTimedOut(timeout: requestTimeout))
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.cancel()
        failAll(ConnectionClosed())
    }

    func channelInactive(context: ChannelHandlerContext) {
        sweep?.cancel()
        failAll(ConnectionClosed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        deadlines.removeAll()
        pollDeadlines.removeAll()
        expiryTimer.cancel()
        expiries.removeAll()
        pending.failAll(error)
    }
}

/// A request on the connection went unanswered for the whole request timeout; the connection was dropped.
public struct RequestTimedOut: Error, CustomStringConvertible {
    public var timeout: TimeAmount
    public var description: String {
        "a request went unanswered for \(timeout.nanoseconds / 1_000_000) ms; the connection was dropped (bookie hung or partitioned)"
    }
}
