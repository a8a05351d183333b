#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DLogWire
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An etcd member's client address.
struct EtcdEndpoint: Hashable, Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    var description: String { "\(host):\(port)" }
}

/// A whole answer to a unary call, whatever its status.
struct EtcdHTTPResponse: Sendable {
    var status: HTTPResponseStatus
    var body: ByteBuffer
    var endpoint: EtcdEndpoint
    /// The server keeps the connection open for the next request.
    var keepAlive: Bool
}

/// How a streaming call ended.
enum EtcdStreamEnd: Sendable {
    /// The connection was lost, timed out, closed by us, or a message broke a limit.
    case lost(MetadataError)
    /// etcd answered the call with an error status instead of a stream.
    case rejected(EtcdHTTPResponse)
}

/// Receives a streaming call's messages. Called on the connection's event loop, one call at a time.
protocol EtcdStreamSink: Sendable {
    /// One newline-separated message of a 200 answer. Returns false to end the call (the connection closes).
    func receive(line: ByteBuffer, from endpoint: EtcdEndpoint) -> Bool
    /// The call is over; called at most once, and never after `receive` returned false.
    func finish(_ end: EtcdStreamEnd)
}

/// A small HTTP/1.1 client for etcd's JSON gateway.
///
/// One request at a time per connection, no pipelining: etcd's Go server answers a connection's requests in
/// order, so pipelining would only queue a fast range behind a slow transaction. Idle keep-alive connections go
/// back to a small pool; a streaming call (a watch) owns its connection until it ends. New connections go to
/// the preferred endpoint; a failure moves the preference to the next endpoint of the list.
final class EtcdHTTPClient: Sendable {
    struct Configuration: Sendable {
        var requestTimeout: Duration
        var connectTimeout: Duration
        /// The largest unary answer, or stream message, kept in memory.
        var responseBytesMax: Int
        var idleConnectionsMax: Int
        /// Requests in flight plus watches plus idle connections.
        var connectionsMax: Int
        /// HTTPS with this identity; nil: plain HTTP.
        var tls: TLSIdentity?
    }

    private struct Connection: Sendable {
        var channel: any Channel
        var endpoint: EtcdEndpoint
        /// Why TLS ended the connection, if it did (etcd refuses a client certificate after the handshake).
        var tlsFailure = TLSFailureRecord()
    }

    private struct State {
        var preferred = 0
        var idle: [Connection] = []
        var open: [ObjectIdentifier: any Channel] = [:]
        var isShutdown = false
    }

    let endpoints: [EtcdEndpoint]
    let configuration: Configuration
    private let group: any EventLoopGroup
    private let state = Mutex(State())

    init(endpoints: [EtcdEndpoint], group: any EventLoopGroup, configuration: Configuration) {
        precondition(!endpoints.isEmpty, "an etcd client needs at least one endpoint")
        precondition(configuration.responseBytesMax > 0 && configuration.connectionsMax > 0)
        self.endpoints = endpoints
        self.group = group
        self.configuration = configuration
    }

    /// POSTs `body` to `path` and returns the whole answer. Connection trouble and timeouts throw `unavailable`
    /// naming the endpoint; an answer over `responseBytesMax` throws `tooLarge`.
    func post(_ path: String, body: ByteBuffer) async throws -> EtcdHTTPResponse {
        let connection = try await checkout()
        let promise = connection.channel.eventLoop.makePromise(of: EtcdHTTPResponse.self)
        let exchange = EtcdExchange(path: path, body: body, timeout: configuration.requestTimeout,
                                    kind: .unary(promise))
        send(exchange, on: connection)
        do {
            let response = try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                connection.channel.close(promise: nil)
            }
            if response.keepAlive { checkin(connection) } else { connection.channel.close(promise: nil) }
            return response
        } catch {
            connection.channel.close(promise: nil)
            // A cancelled caller says nothing about the endpoint's health.
            if Task.isCancelled { throw CancellationError() }
            if let error = error as? MetadataError, error.isRetryable { markFailed(connection.endpoint) }
            throw error
        }
    }

    /// POSTs `body` to `path` on a connection of its own and feeds the answer's messages to `sink`.
    /// Returns the connection's channel: closing it ends the call. The first message must come within
    /// `requestTimeout`; after that the stream may stay quiet for as long as etcd has nothing to say.
    func openStream(_ path: String, body: ByteBuffer, sink: any EtcdStreamSink) async throws -> any Channel {
        let connection = try await connect()
        send(EtcdExchange(path: path, body: body, timeout: configuration.requestTimeout, kind: .stream(sink)),
             on: connection)
        return connection.channel
    }

    /// Connections open now, idle ones included; for tests that check watches release theirs.
    var openConnectionCount: Int { state.withLock { $0.open.count } }

    /// Closes every connection, streams included. Later calls throw `unavailable`.
    func shutdown() async {
        let channels = state.withLock { state in
            state.isShutdown = true
            state.idle = []
            return Array(state.open.values)
        }
        for channel in channels {
            try? await channel.close()
        }
    }

    private func send(_ exchange: EtcdExchange, on connection: Connection) {
        // The write fails only when the channel closed before the handler took the exchange; once taken, the
        // handler completes it on an answer, a timeout or the connection's end.
        connection.channel.writeAndFlush(exchange).whenFailure { error in
            let cause: any Error = connection.tlsFailure.error ?? error
            exchange.fail(.unavailable("connection to etcd \(connection.endpoint) closed before \(exchange.path) was sent: \(cause)"))
        }
    }

    // MARK: Connections

    private func checkout() async throws -> Connection {
        let reused = try state.withLock { state throws(MetadataError) -> Connection? in
            guard !state.isShutdown else { throw Self.shutDownError }
            // A connection etcd closed while idle (a restart) is already inactive: skip it.
            while let connection = state.idle.popLast() {
                if connection.channel.isActive { return connection }
            }
            return nil
        }
        if let reused { return reused }
        return try await connect()
    }

    private func checkin(_ connection: Connection) {
        let surplus = state.withLock { state -> Bool in
            guard !state.isShutdown, connection.channel.isActive,
                  state.idle.count < configuration.idleConnectionsMax else { return true }
            assert(state.open[ObjectIdentifier(connection.channel)] != nil, "an idle connection must be registered")
            state.idle.append(connection)
            return false
        }
        if surplus { connection.channel.close(promise: nil) }
    }

    /// Connects to the preferred endpoint, then to each next one in turn; throws when none answers.
    private func connect() async throws -> Connection {
        var failures: [String] = []
        for _ in endpoints.indices {
            let endpoint = try state.withLock { state throws(MetadataError) in
                guard !state.isShutdown else { throw Self.shutDownError }
                guard state.open.count < configuration.connectionsMax else {
                    throw .unavailable("\(configuration.connectionsMax) connections to etcd are open (the limit); too many requests and watches at once")
                }
                return endpoints[state.preferred]
            }
            do {
                let connected = bootstrap(endpoint).connect(host: endpoint.host, port: endpoint.port)
                // etcd's own TLS (--cert-file, --client-cert-auth): HTTPS with this process's certificate.
                let tlsFailure = TLSFailureRecord()
                let channel = try await TLSIdentity.secure(connected, with: configuration.tls, host: endpoint.host,
                                                           port: endpoint.port, record: tlsFailure).get()
                try register(channel)
                return Connection(channel: channel, endpoint: endpoint, tlsFailure: tlsFailure)
            } catch let error as MetadataError {
                throw error
            } catch {
                failures.append("\(endpoint) (\(ConnectionErrorText.reason(error)))")
                markFailed(endpoint)
            }
        }
        throw MetadataError.unavailable("no etcd endpoint answers: \(failures.joined(separator: ", "))")
    }

    private func bootstrap(_ endpoint: EtcdEndpoint) -> ClientBootstrap {
        let configuration = self.configuration
        return ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A watch may be quiet for hours; keepalive notices a peer that vanished without a FIN.
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        EtcdExchangeHandler(endpoint: endpoint, responseBytesMax: configuration.responseBytesMax))
                }
            }
    }

    private func register(_ channel: any Channel) throws(MetadataError) {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { state -> Bool in
            guard !state.isShutdown else { return false }
            state.open[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            throw Self.shutDownError
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.open.removeValue(forKey: id) }
        }
    }

    /// Moves the preference past `endpoint` and drops idle connections to it. Only when it is still the
    /// preferred one, so that concurrent failures on one endpoint skip it once, not the healthy one after it.
    func markFailed(_ endpoint: EtcdEndpoint) {
        let dropped = state.withLock { state -> [Connection] in
            if endpoints[state.preferred] == endpoint {
                state.preferred = (state.preferred + 1) % endpoints.count
            }
            let dropped = state.idle.filter { $0.endpoint == endpoint }
            state.idle.removeAll { $0.endpoint == endpoint }
            return dropped
        }
        for connection in dropped { connection.channel.close(promise: nil) }
    }

    private static let shutDownError = MetadataError.unavailable("the etcd store was shut down")
}

/// One call on a connection, handed to its handler.
struct EtcdExchange: Sendable {
    enum Kind: Sendable {
        case unary(EventLoopPromise<EtcdHTTPResponse>)
        case stream(any EtcdStreamSink)
    }

    var path: String
    var body: ByteBuffer
    var timeout: Duration
    var kind: Kind

    func fail(_ error: MetadataError) {
        switch kind {
        case .unary(let promise): promise.fail(error)
        case .stream(let sink): sink.finish(.lost(error))
        }
    }
}

/// Runs one exchange at a time on a connection: writes the request, then collects the answer (unary) or cuts
/// it into newline-separated messages for the sink (stream). Lives on the channel's event loop.
final class EtcdExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = EtcdExchange
    typealias OutboundOut = HTTPClientRequestPart

    private enum State {
        case idle
        /// `buffer` holds a unary answer so far, or a stream's incomplete last message.
        case active(EtcdExchange, head: HTTPResponseHead?, buffer: ByteBuffer)
        case closed
    }

    private let endpoint: EtcdEndpoint
    private let responseBytesMax: Int
    private var state = State.idle
    /// Why the connection ended, when it ended on an error (a TLS refusal names its cause): told to exchanges that
    /// arrive after.
    private var closedBy: MetadataError?
    /// Bounds the wait for a unary answer, or for a stream's first message.
    private var timer: Scheduled<Void>?

    init(endpoint: EtcdEndpoint, responseBytesMax: Int) {
        self.endpoint = endpoint
        self.responseBytesMax = responseBytesMax
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = unwrapOutboundIn(data)
        switch state {
        case .closed:
            exchange.fail(closedBy ?? .unavailable("connection to etcd \(endpoint) closed before \(exchange.path) was sent"))
            promise?.succeed(())
            return
        case .active:
            preconditionFailure("a connection carries one exchange at a time")
        case .idle:
            break
        }
        state = .active(exchange, head: nil, buffer: context.channel.allocator.buffer(capacity: 0))
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.description)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(exchange.body.readableBytes))
        if exchange.path == "/v3/watch" {
            // A member cut off from the cluster would keep a watch open and silent: with this, it ends the
            // watch instead, and the watch resumes on another member.
            headers.add(name: "Grpc-Metadata-hasleader", value: "true")
        }
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: exchange.path, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(exchange.body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: nil)
        // From here on the handler completes the exchange (answer, timeout, or the connection's end); a failed
        // write shows up as the connection's end, so the write itself reports success.
        promise?.succeed(())
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(exchange.timeout)) {
            self.fail(.unavailable("etcd \(self.endpoint) did not answer \(exchange.path) within \(exchange.timeout)"),
                      context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Bytes after a timeout, a failure or the end of an exchange have nobody waiting: drop them.
        guard case .active(let exchange, var head, var buffer) = state else { return }
        state = .idle // so that `buffer` is the only reference and appending does not copy it
        switch unwrapInboundIn(data) {
        case .head(let received):
            head = received
        case .body(var part):
            let hasNewline = part.readableBytesView.contains(UInt8(ascii: "\n"))
            buffer.writeBuffer(&part)
            if case .stream(let sink) = exchange.kind, head?.status == .ok, hasNewline {
                guard deliverLines(&buffer, to: sink) else {
                    state = .closed
                    context.close(promise: nil)
                    return
                }
            }
            guard buffer.readableBytes <= responseBytesMax else {
                state = .active(exchange, head: head, buffer: buffer)
                fail(tooLarge(exchange), context: context)
                return
            }
        case .end:
            complete(exchange, head: head, body: buffer, context: context)
            return
        }
        state = .active(exchange, head: head, buffer: buffer)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.unavailable("connection to etcd \(endpoint) lost"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? HTTPParserError, error != .invalidEOFState {
            fail(.internalError("etcd \(endpoint) sent malformed HTTP: \(error)"), context: context)
        } else {
            // Including the end of the connection in the middle of an answer: etcd went away.
            fail(.unavailable("connection to etcd \(endpoint) failed: \(error)"), context: context)
        }
    }

    /// The answer is whole: a unary call gets it and the connection is free again; a stream is over.
    private func complete(_ exchange: EtcdExchange, head: HTTPResponseHead?, body: ByteBuffer,
                          context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        guard let head else {
            state = .active(exchange, head: nil, buffer: body)
            fail(.internalError("etcd \(endpoint) ended an answer without a status line"), context: context)
            return
        }
        let response = EtcdHTTPResponse(status: head.status, body: body, endpoint: endpoint,
                                        keepAlive: head.isKeepAlive)
        switch exchange.kind {
        case .unary(let promise):
            state = .idle
            promise.succeed(response)
        case .stream(let sink):
            state = .closed
            context.close(promise: nil)
            sink.finish(head.status == .ok
                ? .lost(.unavailable("etcd \(endpoint) ended the stream of \(exchange.path)"))
                : .rejected(response))
        }
    }

    /// Hands each complete line in `buffer` to `sink` and keeps the incomplete rest, which holds no newline.
    /// False when the sink ended the call.
    private func deliverLines(_ buffer: inout ByteBuffer, to sink: any EtcdStreamSink) -> Bool {
        while let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let line = buffer.readSlice(length: newline - buffer.readerIndex)!
            buffer.moveReaderIndex(forwardBy: 1)
            // The stream is up; from now on it may stay quiet for as long as nothing changes.
            timer?.cancel()
            timer = nil
            if line.readableBytes > 0, !sink.receive(line: line, from: endpoint) { return false }
        }
        assert(!buffer.readableBytesView.contains(UInt8(ascii: "\n")), "a complete message was left behind")
        buffer.discardReadBytes()
        return true
    }

    private func tooLarge(_ exchange: EtcdExchange) -> MetadataError {
        switch exchange.kind {
        case .unary:
            return .tooLarge("the answer of etcd \(endpoint) to \(exchange.path) exceeds \(responseBytesMax) bytes")
        case .stream:
            // Watches ask etcd to fragment big responses, so this is a configuration mismatch, not load.
            return .internalError("a message of etcd \(endpoint) on \(exchange.path) exceeds \(responseBytesMax) bytes; raise responseBytesMax above etcd's --max-request-bytes")
        }
    }

    /// Ends the exchange in progress, if any, with `error` and closes the connection.
    private func fail(_ error: MetadataError, context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        let previous = state
        state = .closed
        if closedBy == nil { closedBy = error }
        if case .active(let exchange, _, _) = previous { exchange.fail(error) }
        context.close(promise: nil)
    }
}
