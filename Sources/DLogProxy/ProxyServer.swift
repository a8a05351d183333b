import DLogWire
import Logging
import NIOCore
import NIOPosix

/// The proxy role's TCP server: `ProxyService` over the common frame (docs/protocol.md, "Proxy role"). No
/// request waits for another's answer: the writes to owned streams go to their writers when the read that
/// brought them ends, anything slower runs as its own task, so one slow stream never holds up another on the
/// same connection; answers go back in whatever order they finish, matched by request id.
public final class ProxyServer: Sendable, FrameListening {
    public let service: ProxyService
    public let listener: FrameServer

    /// A bulk write of the largest records, plus framing.
    public static let requestFrameBytesMax = 20 << 20

    /// `group`: event loops shared with the proxy's bookie connections (see `ProxyRole`); else `threads` of its own.
    public init(service: ProxyService, host: String, port: Int, threads: Int = 1,
                group: MultiThreadedEventLoopGroup? = nil, tls: ServerTLS? = nil, budget: ConnectionBudget? = nil,
                access: ProxyAccess? = nil, logger: Logger) throws {
        self.service = service
        listener = try FrameServer(host: host, port: port, threads: threads, group: group,
                                   maxFrameBytes: Self.requestFrameBytesMax, tls: tls, budget: budget) {
            ProxyRequestHandler(service: service, access: access, logger: logger)
        }
    }
}

/// One connection. A malformed body gets a BAD_REQUEST answer and the connection goes on; a broken frame
/// closes this connection only. Reading stops while too many requests are unanswered or answers pile up.
final class ProxyRequestHandler: ChannelInboundHandler {
    typealias InboundIn = Frame

    static let outstandingMax = 4096

    let service: ProxyService
    let logger: Logger
    private let gate = RequestGate(limit: ProxyRequestHandler.outstandingMax)

    let access: ProxyAccess?
    /// The connection's principal, once its TLS handshake named it (`PeerPrincipal`).
    private var principal: Principal?
    /// Refusals logged on this connection so far (one line per right).
    private var refused: Set<String> = []
    /// Writes read since the read began, handed to the service together when it ends (or before any other
    /// request, which keeps their order): many clients' writes arrive in one read, and handed over one by one
    /// the first went out as an entry alone while the rest waited behind it. At 4 streams × 32 writers, 65% of
    /// entries carried one record.
    private var held: [ProxyService.Pending] = []

    init(service: ProxyService, access: ProxyAccess? = nil, logger: Logger) {
        self.service = service
        self.access = access
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
        guard let batcher = gate.batcher else { return }  // nil once the connection closed
        gate.took(channel: context.channel)
        let request: ProxyRequest
        do {
            request = try ProxyRequest.decode(frame)
        } catch {
            logger.info("malformed proxy request", metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")",
                                                              "error": "\(error)"])
            let op = frame.header.op
            batcher.send { error.encode(op: op, requestID: requestID, into: &$0) }
            return
        }
        if let access, let refusal = access.refusal(request, by: principal) {
            access.denied.add(1, ordering: .relaxed)
            let right = ProxyAccess.right(for: request).rawValue
            if refused.insert(right).inserted {
                logger.warning("permission denied: \(refusal)", metadata: [
                    "principal": "\(principal?.name ?? "-")", "role": "\(principal?.role.rawValue ?? "-")",
                    "op": "\(request.op)", "stream": "\(request.stream)",
                    "peer": "\(context.remoteAddress.map { "\($0)" } ?? "-")",
                ])
            }
            batcher.send { ProxyFailure(.permissionDenied, refusal).encode(op: request.op.rawValue, requestID: requestID, into: &$0) }
            return
        }
        let received = ProxyMeters.now
        let meters = service.meters
        let pending: ProxyService.Pending = (request, { result in
            meters.answered(request.op, since: received)
            batcher.send { buffer in
                switch result {
                case .success(let reply): reply.encode(op: request.op, requestID: requestID, into: &buffer)
                case .failure(let failure): failure.encode(op: request.op.rawValue, requestID: requestID, into: &buffer)
                }
            }
        })
        switch request {
        case .write, .writeBulk: held.append(pending)
        default:
            handOver()
            service.handle([pending])
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        handOver()
        context.fireChannelReadComplete()
    }

    /// Hands the writes held since the read began to the service in one step (see `held`).
    private func handOver() {
        guard !held.isEmpty else { return }
        service.handle(held)
        held.removeAll(keepingCapacity: true)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handOver()
        gate.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is FrameError {
            logger.info("closing proxy connection on a broken frame",
                        metadata: ["peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "error": "\(error)"])
        }
        context.close(promise: nil)
    }
}
