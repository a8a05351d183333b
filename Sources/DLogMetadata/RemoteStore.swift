import DLogWire
import NIOCore
import NIOPosix
import Synchronization

/// The `MetadataStore` of a metadata role reached over TCP (`dlog://host:port[,host:port]`).
///
/// One pipelined connection at a time, made when first needed and again after it is lost, trying the listed
/// endpoints in turn. A request in flight when the connection drops fails with `unavailable` (it may or may
/// not have applied: a caller retrying a compare-and-set then learns which from the version). Watches end
/// with `unavailable` too, and `MetadataWatch` resumes them from the last revision it delivered.
public final class RemoteStore: MetadataStore {
    public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { "\(host):\(port)" }
    }

    public let endpoints: [Endpoint]
    let group: any EventLoopGroup
    let requestTimeout: TimeAmount
    /// TLS to the metadata role (its certificate must name each endpoint's host); nil: plaintext.
    let tls: TLSIdentity?
    /// Why TLS closed the current connection, if it did (one connection at a time, so one record).
    private let tlsFailure = TLSFailureRecord()
    /// Responses may carry a 4 MiB range page or watch batch plus one more item.
    static let responseFrameBytesMax = 16 << 20

    private struct State {
        var connection: EventLoopFuture<Channel>?
        var next = 0
        var shutDown = false
    }
    private let state = Mutex(State())
    /// Calls waiting to be written, with their connection: one event-loop task writes all that gathered and
    /// flushes once, instead of a task and a system call per call (a proxy draining or opening thousands of
    /// streams makes that many calls at once).
    private let outbox = Mutex<[(channel: Channel, request: MetadataRequest, reply: EventLoopPromise<MetadataReply>)]>([])

    public init(endpoints: [Endpoint], group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                requestTimeout: Duration = .seconds(10), tls: TLSIdentity? = nil) {
        precondition(!endpoints.isEmpty)
        self.endpoints = endpoints
        self.group = group
        self.tls = tls
        let (seconds, attoseconds) = requestTimeout.components
        self.requestTimeout = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    // MARK: Connection

    /// The current connection, connecting (to the next endpoint after a failure) when there is none.
    func channel() async throws -> Channel {
        var lastError: any Error = MetadataError.unavailable("no endpoint")
        for _ in 0..<endpoints.count {
            let future: EventLoopFuture<Channel> = try state.withLock { state in
                guard !state.shutDown else { throw MetadataError.unavailable("the metadata client was shut down") }
                if let current = state.connection { return current }
                let endpoint = endpoints[state.next % endpoints.count]
                state.next += 1
                let made = connect(endpoint)
                state.connection = made
                return made
            }
            do {
                return try await future.get()
            } catch {
                state.withLock { if $0.connection === future { $0.connection = nil } }
                lastError = error
            }
        }
        throw MetadataError.unavailable("cannot reach the metadata role at \(endpoints.map(\.description).joined(separator: ", ")): \(ConnectionErrorText.reason(lastError))")
    }

    private func connect(_ endpoint: Endpoint) -> EventLoopFuture<Channel> {
        let requestTimeout = requestTimeout
        let connected = ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A connection that only carries a watch sends nothing for long stretches: TCP keepalive finds a
            // dead peer within about 20 s, ending the watch so it resumes elsewhere.
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.Types.SocketOption(level: IPPROTO_TCP, name: TCP_KEEPIDLE), value: 10)
            .channelOption(ChannelOptions.Types.SocketOption(level: IPPROTO_TCP, name: TCP_KEEPINTVL), value: 3)
            .channelOption(ChannelOptions.Types.SocketOption(level: IPPROTO_TCP, name: TCP_KEEPCNT), value: 3)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameDecoder(maxFrameBytes: Self.responseFrameBytesMax)))
                    try channel.pipeline.syncOperations.addHandler(MetadataClientHandler(endpoint: endpoint, requestTimeout: requestTimeout))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
        tlsFailure.reset()
        let future = TLSIdentity.secure(connected, with: tls, host: endpoint.host, port: endpoint.port, record: tlsFailure)
        future.whenSuccess { [weak self] channel in
            let store = self
            channel.closeFuture.whenComplete { _ in
                store?.state.withLock { if $0.connection === future { $0.connection = nil } }
            }
        }
        return future
    }

    func call(_ request: MetadataRequest) async throws -> MetadataReply {
        let channel = try await channel()
        let promise = channel.eventLoop.makePromise(of: MetadataReply.self)
        let first = outbox.withLock { waiting in
            waiting.append((channel, request, promise))
            return waiting.count == 1
        }
        // The first call of a gathering schedules the task that writes them all: a call added before that task
        // runs goes with it, one added after finds the outbox empty and schedules the next.
        if first { channel.eventLoop.execute { self.writeWaitingCalls() } }
        return try await promise.futureResult.get()
    }

    private func writeWaitingCalls() {
        let waiting = outbox.withLock { waiting in
            defer { waiting.removeAll(keepingCapacity: true) }
            return waiting
        }
        // Usually one connection: one write of every call for it, encoded into one buffer by the handler.
        var batches: [(channel: Channel, calls: [ClientCall.Call])] = []
        for (channel, request, reply) in waiting {
            if let i = batches.firstIndex(where: { $0.channel === channel }) {
                batches[i].calls.append((request, reply))
            } else {
                batches.append((channel, [(request, reply)]))
            }
        }
        for (channel, calls) in batches {
            // A write to a connection that closed meanwhile never reaches the handler: fail the calls here.
            channel.writeAndFlush(ClientCall.requests(calls)).whenFailure { [tlsFailure] error in
                let cause: any Error = tlsFailure.error ?? error
                for (_, reply) in calls { reply.fail(MetadataError.unavailable("connection to the metadata role was lost: \(cause)")) }
            }
        }
    }

    // MARK: MetadataStore

    public func range(_ range: KeyRange, limit: Int) async throws -> RangePage {
        try MetadataLimits.validate(range: range, limit: limit)
        guard case .range(let page) = try await call(.range(range, limit: limit)) else { throw Self.mismatch }
        return page
    }

    public func commit(_ transaction: Transaction) async throws -> Revision {
        try MetadataLimits.validate(transaction)
        guard case .committed(let revision) = try await call(.commit(transaction)) else { throw Self.mismatch }
        return revision
    }

    public func subscribe(_ range: KeyRange, from revision: Revision) -> AsyncThrowingStream<[WatchEvent], any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [WatchEvent].self,
                                                                    bufferingPolicy: .bufferingOldest(256))
        do {
            try MetadataLimits.validate(range: range, limit: 1)
        } catch {
            continuation.finish(throwing: error)
            return stream
        }
        let consumer = WatchConsumer(continuation)
        continuation.onTermination = { _ in consumer.cancel() }
        Task {
            do {
                let channel = try await channel()
                try await channel.writeAndFlush(ClientCall.watch(.watch(range, from: revision), consumer))
            } catch let error as MetadataError {
                continuation.finish(throwing: error)
            } catch {
                continuation.finish(throwing: MetadataError.unavailable("connection to the metadata role was lost: \(error)"))
            }
        }
        return stream
    }

    public func grantLease(ttlSeconds: Int) async throws -> Lease {
        try MetadataLimits.validate(ttlSeconds: ttlSeconds)
        guard case .lease(let lease) = try await call(.leaseGrant(ttlSeconds: ttlSeconds)) else { throw Self.mismatch }
        return lease
    }

    public func keepAlive(_ lease: LeaseID) async throws -> Int {
        guard case .ttl(let ttl) = try await call(.leaseKeepAlive(lease)) else { throw Self.mismatch }
        return ttl
    }

    public func revoke(_ lease: LeaseID) async throws {
        _ = try await call(.leaseRevoke(lease))
    }

    /// The metadata role's counters as JSON text.
    public func stats() async throws -> String {
        guard case .stats(let json) = try await call(.stats) else { throw Self.mismatch }
        return String(decoding: json, as: UTF8.self)
    }

    public func shutdown() async {
        let current = state.withLock { state -> EventLoopFuture<Channel>? in
            state.shutDown = true
            defer { state.connection = nil }
            return state.connection
        }
        if let channel = try? await current?.get() { try? await channel.close() }
    }

    static let mismatch = MetadataError.internalError("the metadata role answered with the wrong kind of reply")
}

/// What the client writes into its channel: the handler assigns the request id.
enum ClientCall {
    typealias Call = (request: MetadataRequest, reply: EventLoopPromise<MetadataReply>)
    /// Calls gathered by one write task, sent together.
    case requests([Call])
    case watch(MetadataRequest, WatchConsumer)
}

/// The receiving end of one watch: yields batches into the caller's stream, and can cancel the watch on the
/// server once the handler has told it where the watch lives.
final class WatchConsumer: Sendable {
    private let continuation: AsyncThrowingStream<[WatchEvent], any Error>.Continuation
    private let registration = Mutex<(channel: Channel, requestID: UInt64)?>(nil)
    private let cancelled = Atomic<Bool>(false)

    init(_ continuation: AsyncThrowingStream<[WatchEvent], any Error>.Continuation) {
        self.continuation = continuation
    }

    func registered(on channel: Channel, requestID: UInt64) {
        registration.withLock { $0 = (channel, requestID) }
        if cancelled.load(ordering: .relaxed) { cancel() }
    }

    /// False when the consumer is gone or fell behind; the watch is then cancelled.
    func yield(_ events: [WatchEvent]) -> Bool {
        switch continuation.yield(events) {
        case .enqueued: return true
        case .dropped:
            continuation.finish(throwing: MetadataError.unavailable("watch consumer fell behind"))
            cancel()
            return false
        case .terminated: return false
        @unknown default: return false
        }
    }

    func finish(_ error: MetadataError) { continuation.finish(throwing: error) }

    func cancel() {
        cancelled.store(true, ordering: .relaxed)
        guard let (channel, id) = registration.withLock({ $0 }) else { return }
        // A write to a closed connection never reaches the handler that would answer the promise: fail it
        // here then, or it leaks (a fatal error in debug builds), as when a watch ends with its connection.
        let promise = channel.eventLoop.makePromise(of: MetadataReply.self)
        channel.writeAndFlush(ClientCall.requests([(.cancelWatch(id), promise)])).whenFailure { error in
            promise.fail(MetadataError.unavailable("connection to the metadata role was lost: \(error)"))
        }
    }
}
