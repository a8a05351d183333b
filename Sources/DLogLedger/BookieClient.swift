import DLogWire
import NIOCore
import NIOPosix

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

    /// Connects to `host:port`. Pass a group to share event loops between many clients.
    public static func connect(host: String, port: Int, group: EventLoopGroup? = nil,
                               maxFrameBytes: Int = 16 << 20) async throws -> BookieClient {
        let own = group == nil ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : nil
        do {
            let channel = try await ClientBootstrap(group: group ?? own!)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                        try channel.pipeline.syncOperations.addHandler(ClientHandler())
                    }
                }
                .connect(host: host, port: port).get()
            return BookieClient(channel: channel, ownsGroup: own)
        } catch {
            try? await own?.shutdownGracefully()
            throw error
        }
    }

    private init(channel: Channel, ownsGroup: MultiThreadedEventLoopGroup?) {
        self.channel = channel
        self.ownsGroup = ownsGroup
    }

    public func close() async {
        try? await channel.close()
        try? await ownsGroup?.shutdownGracefully()
    }

    /// Sends a request and waits for its response (a `.failed` response is returned, not thrown).
    public func send(_ request: BookieRequest) async throws -> BookieResponse {
        try await sendFuture(request).get()
    }

    /// Sends without waiting: for pipelined load.
    public func sendFuture(_ request: BookieRequest) -> EventLoopFuture<BookieResponse> {
        let promise = channel.eventLoop.makePromise(of: BookieResponse.self)
        // The write promise fails only when the handler never took the request (channel already closed);
        // once taken, the handler completes the response promise, on a response or when the channel closes.
        channel.writeAndFlush(ClientHandler.Outbound(request: request, promise: promise)).whenFailure { error in
            promise.fail(error)
        }
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
}

public struct ConnectionClosed: Error, CustomStringConvertible {
    public var description: String { "connection to the bookie closed" }
}

/// Assigns request ids, keeps the promises, and completes them as responses arrive in any order.
final class ClientHandler: ChannelDuplexHandler {
    struct Outbound: Sendable {
        var request: BookieRequest
        var promise: EventLoopPromise<BookieResponse>
    }
    typealias InboundIn = Frame
    typealias OutboundIn = Outbound
    typealias OutboundOut = ByteBuffer

    private var nextID: UInt64 = 1
    private var waiting: [UInt64: EventLoopPromise<BookieResponse>] = [:]
    private var closed = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let out = unwrapOutboundIn(data)
        guard !closed else {
            out.promise.fail(ConnectionClosed())
            promise?.succeed(())
            return
        }
        let id = nextID
        nextID += 1
        waiting[id] = out.promise
        var buffer = context.channel.allocator.buffer(capacity: 64)
        out.request.encode(requestID: id, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        promise?.succeed(())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let promise = waiting.removeValue(forKey: frame.header.requestID) else { return }
        do {
            promise.succeed(try BookieResponse.decode(frame).1)
        } catch {
            promise.fail(error)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(ConnectionClosed())
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(ConnectionClosed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        closed = true
        let all = waiting
        waiting = [:]
        for p in all.values { p.fail(error) }
    }
}
