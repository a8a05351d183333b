import DLogWire
import Logging
import NIOCore
import NIOPosix

/// The bookie's TCP server. Handlers stay on their event loop; journal completions come back through
/// `Channel.writeAndFlush`, which is safe from any thread; reads that must touch disk run on a thread pool.
public final class BookieServer: Sendable {
    public let bookie: Bookie
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    let channel: Channel
    let maxFrameBytes: Int

    public var localAddress: SocketAddress? { channel.localAddress }

    public init(bookie: Bookie, host: String, port: Int, maxFrameBytes: Int, threads: Int = 2,
                logger: Logger) throws {
        self.bookie = bookie
        self.maxFrameBytes = maxFrameBytes
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let pool = self.pool
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                        try channel.pipeline.syncOperations.addHandler(
                            BookieRequestHandler(bookie: bookie, pool: pool, logger: logger))
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            try? pool.syncShutdownGracefully()
            throw error
        }
    }

    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        try? pool.syncShutdownGracefully()
    }
}

/// Decodes one request per frame and dispatches it. A frame that cannot be decoded closes this connection
/// only, with the reason logged.
final class BookieRequestHandler: ChannelInboundHandler {
    typealias InboundIn = Frame

    let bookie: Bookie
    let pool: NIOThreadPool
    let logger: Logger
    private var batcher: ResponseBatcher?
    private var paused = false

    init(bookie: Bookie, pool: NIOThreadPool, logger: Logger) {
        self.bookie = bookie
        self.pool = pool
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        batcher = ResponseBatcher(channel: context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let request: BookieRequest
        do {
            request = try BookieRequest.decode(frame)
        } catch {
            reject(context: context, reason: "\(error)")
            return
        }
        let batcher = self.batcher!
        let requestID = frame.header.requestID
        let op = request.op
        let reply: Bookie.Reply = { response in batcher.send(response, op: op, requestID: requestID) }
        switch request {
        case .add(let key, let entry, let recovery):
            bookie.add(masterKey: key, entry: entry, recovery: recovery, reply: reply)
            if bookie.underWritePressure && !paused {
                // Stop reading this connection until a checkpoint frees cache; the client sees latency,
                // not errors. Frames already read are still served.
                paused = true
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
                let channel = context.channel
                let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
                bookie.whenWritePressureEases {
                    channel.eventLoop.execute {
                        loopBound.value.paused = false
                        channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
                        channel.read()
                    }
                }
            }
        case .read(let ledger, let entry, let fenceKey):
            let bookie = self.bookie
            let pool = self.pool
            let read: @Sendable () -> Void = {
                if bookie.isCached(ledger: ledger, entry: entry) {
                    reply(bookie.readEntry(ledger: ledger, entry: entry))
                } else {
                    pool.submit { _ in reply(bookie.readEntry(ledger: ledger, entry: entry)) }
                }
            }
            if let key = fenceKey {
                bookie.fenceAndRead(ledger: ledger, entry: entry, masterKey: key, reply: reply, read: read)
            } else {
                read()
            }
        case .readLAC(let ledger, let poll):
            if let token = bookie.readLAC(ledger: ledger, longPollPrevious: poll?.previous, reply: reply), let poll {
                let bookie = self.bookie
                context.eventLoop.scheduleTask(in: .milliseconds(Int64(poll.timeoutMilliseconds))) {
                    bookie.expireLongPoll(ledger: ledger, token: token, reply: reply)
                }
            }
        case .writeLAC(let ledger, let key, let lac):
            bookie.writeLAC(ledger: ledger, masterKey: key, lac: lac, reply: reply)
        case .deleteLedger(let ledger):
            bookie.deleteLedger(ledger, reply: reply)
        case .getInfo:
            reply(.info(json: bookie.infoJSON()))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        reject(context: context, reason: "\(error)")
    }

    private func reject(context: ChannelHandlerContext, reason: String) {
        logger.warning("closing connection: malformed input", metadata: [
            "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "reason": "\(reason)"])
        context.close(promise: nil)
    }
}
