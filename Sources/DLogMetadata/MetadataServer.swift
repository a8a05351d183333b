import CoreMetrics
import DLogWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The metadata role's TCP server: the `MetadataStore` contract over the common frame, answered by an
/// `EmbeddedStore`. Handlers stay on their event loop; the store's thread answers through `ResponseBatcher`.
public final class MetadataServer: Sendable, FrameListening {
    public let store: EmbeddedStore
    public let listener: FrameServer
    /// Requests refused as PERMISSION_DENIED (`MetadataAccess`), for metrics.
    public let permissionDenied = DeniedCount()
    /// Service times by operation, for metrics.
    public let meters: MetadataMeters

    /// Requests carry at most one transaction (≈1.06 MiB of keys and values) plus framing.
    public static let requestFrameBytesMax = 2 << 20

    /// `access`: who may do what, checked on every request (a port that requires TLS); nil: anyone may do anything.
    public init(store: EmbeddedStore, host: String, port: Int, threads: Int = 1, tls: ServerTLS? = nil,
                budget: ConnectionBudget? = nil, access: MetadataAccess? = nil, metrics: (any MetricsFactory)? = nil,
                logger: Logger) throws {
        self.store = store
        let denied = permissionDenied
        let meters = MetadataMeters(factory: metrics ?? MetricsSystem.factory)
        self.meters = meters
        listener = try FrameServer(host: host, port: port, threads: threads, maxFrameBytes: Self.requestFrameBytesMax,
                                   tls: tls, budget: budget) {
            MetadataRequestHandler(store: store, access: access, denied: denied, meters: meters, logger: logger)
        }
    }
}

/// One connection. A request whose body is malformed gets an `invalidArgument` answer and the connection
/// goes on (the framing is intact); a broken frame (bad length or version) closes this connection only.
final class MetadataRequestHandler: ChannelInboundHandler {
    typealias InboundIn = Frame

    /// Unanswered requests past which the connection is not read until answers drain.
    static let outstandingMax = 4096
    /// Watch bytes queued for a slow client past which its watch is ended (it resumes from its last revision).
    static let watchBacklogBytesMax = 32 << 20

    let store: EmbeddedStore
    let logger: Logger
    private let gate = RequestGate(limit: MetadataRequestHandler.outstandingMax)
    private var batcher: ResponseBatcher? { gate.batcher }
    private var watches: [UInt64: UInt64] = [:]
    private let watchBacklog = WatchBacklog()

    let access: MetadataAccess?
    let denied: DeniedCount
    /// The connection's principal, once its TLS handshake named it (`PeerPrincipal`).
    private var principal: Principal?
    /// Operations refused on this connection so far: each is logged once per connection.
    private var refused: Set<UInt8> = []

    let meters: MetadataMeters?

    init(store: EmbeddedStore, access: MetadataAccess? = nil, denied: DeniedCount = DeniedCount(), meters: MetadataMeters? = nil,
         logger: Logger) {
        self.meters = meters
        self.store = store
        self.access = access
        self.denied = denied
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let peer = event as? PeerPrincipal { principal = peer.principal }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerAdded(context: ChannelHandlerContext) { gate.added(context: context) }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        gate.writabilityChanged(channel: context.channel)
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let requestID = frame.header.requestID
        guard let batcher = self.batcher else { return }  // nil once the connection closed
        let request: MetadataRequest
        do {
            request = try MetadataRequest.decode(frame)
        } catch {
            logger.info("malformed metadata request", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")",
                                                                 "error": "\(error)"])
            gate.took(channel: context.channel)
            let op = frame.header.op
            batcher.send { error.encode(op: op, requestID: requestID, into: &$0) }
            return
        }
        gate.took(channel: context.channel)
        if let access, !access.allows(request.op, by: principal) {
            let message = MetadataAccess.refusal(request.op, by: principal)
            if refused.insert(request.op.rawValue).inserted {
                logger.warning("permission denied: \(message)", metadata: [
                    "principal": "\(principal?.name ?? "-")", "role": "\(principal?.role.rawValue ?? "-")",
                    "op": "\(request.op.name)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "-")",
                ])
            }
            denied.count.add(1, ordering: .relaxed)
            let op = request.op.rawValue
            batcher.send { MetadataError.permissionDenied(message).encode(op: op, requestID: requestID, into: &$0) }
            return
        }
        dispatch(request, requestID: requestID, context: context)
    }

    private func dispatch(_ request: MetadataRequest, requestID: UInt64, context: ChannelHandlerContext) {
        guard let batcher = self.batcher else { return }  // nil once the connection closed
        let op = request.op
        let meters = self.meters, received = MetadataMeters.now
        let reply = { @Sendable (result: Result<MetadataReply, MetadataError>) in
            meters?.answered(op, since: received)
            batcher.send { buffer in
                switch result {
                case .success(let answer): answer.encode(op: op, requestID: requestID, into: &buffer)
                case .failure(let error): error.encode(op: op.rawValue, requestID: requestID, into: &buffer)
                }
            }
        }
        switch request {
        case .range(let range, let limit):
            store.submit(.range(range, limit: limit, reply: { reply($0.map(MetadataReply.range)) }))
        case .commit(let transaction):
            store.submit(.commit(transaction, reply: { reply($0.map(MetadataReply.committed)) }))
        case .watch(let range, let from):
            if watches[requestID] != nil {
                reply(.failure(.invalidArgument("request id \(requestID) already carries a watch on this connection")))
                return
            }
            startWatch(range, from: from, requestID: requestID, context: context)
            // A watch's answers are its events, counted apart from ordinary answers.
            gate.answered(1, channel: context.channel)
        case .cancelWatch(let id):
            if let sink = watches.removeValue(forKey: id) { store.submit(.unsubscribe(sink)) }
            reply(.success(.done))
        case .leaseGrant(let ttl):
            store.submit(.grant(ttlSeconds: ttl, reply: { reply($0.map(MetadataReply.lease)) }))
        case .leaseKeepAlive(let id):
            store.submit(.keepAlive(id, reply: { reply($0.map(MetadataReply.ttl)) }))
        case .leaseRevoke(let id):
            store.submit(.revoke(id, reply: { reply($0.map { .done }) }))
        case .stats:
            store.submit(.stats(reply: { stats in reply(.success(.stats(Array(stats.json.utf8)))) }))
        }
    }

    /// Streams events to the client under the watch request's id. Writes go straight to the event loop in
    /// the order the store thread delivers them; the backlog of unwritten bytes is bounded.
    private func startWatch(_ range: KeyRange, from: Revision, requestID: UInt64, context: ChannelHandlerContext) {
        let channel = context.channel
        let backlog = watchBacklog
        let sinkID = store.makeWatchID()
        watches[requestID] = sinkID
        let op = MetadataOp.watch.rawValue
        let sink = WatchSink(id: sinkID, range: range, deliver: { events in
            // A closed connection takes no more: the store then forgets the watch even if its unsubscribe
            // was lost.
            guard channel.isActive else { return false }
            var buffer = channel.allocator.buffer(capacity: 256)
            MetadataReply.events(events).encode(op: .watch, requestID: requestID, into: &buffer)
            let bytes = buffer.readableBytes
            guard backlog.add(bytes) <= Self.watchBacklogBytesMax else {
                backlog.add(-bytes)
                var error = channel.allocator.buffer(capacity: 64)
                MetadataError.unavailable("watch fell behind; resume from the last revision received")
                    .encode(op: op, requestID: requestID, into: &error)
                channel.writeAndFlush(error, promise: nil)
                return false
            }
            channel.writeAndFlush(buffer).whenComplete { _ in backlog.add(-bytes) }
            return true
        }, end: { error in
            var buffer = channel.allocator.buffer(capacity: 64)
            error.encode(op: op, requestID: requestID, into: &buffer)
            channel.writeAndFlush(buffer, promise: nil)
        })
        store.submit(.subscribe(sink, from: from))
    }

    func channelInactive(context: ChannelHandlerContext) {
        for sink in watches.values { store.submit(.unsubscribe(sink)) }
        watches.removeAll()
        // The batcher's callback holds this handler: let go of it, or every closed connection stays in memory.
        gate.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is FrameError {
            logger.info("closing metadata connection on a broken frame",
                        metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
        }
        context.close(promise: nil)
    }
}

/// Bytes of watch events queued for one connection and not yet written.
final class WatchBacklog: Sendable {
    private let bytes = Atomic<Int>(0)
    /// Adds `delta` and returns the new total.
    @discardableResult
    func add(_ delta: Int) -> Int { bytes.add(delta, ordering: .relaxed).newValue }
}

extension EmbeddedStats {
    /// The counters as one line of JSON, for the STATS operation and `dlogctl metadata stats`.
    public var json: String {
        "{\"revision\":\(revision),\"compacted_revision\":\(compactedRevision),\"leases\":\(leases),"
            + "\"watchers\":\(watchers),\"commits\":\(commits),\"batches\":\(batches)}"
    }
}
