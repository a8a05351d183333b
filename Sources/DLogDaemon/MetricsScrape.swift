import DLogWire
import NIOCore
import NIOHTTP1
import NIOPosix

/// One `GET /metrics` of a role's metrics port, the way Prometheus scrapes it (HTTPS with `tls`): what
/// `dlogctl top` reads the roles' live figures from.
public enum MetricsScrape {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The Prometheus text at `address` (host:port), or a `Failure` saying why not within `timeout`.
    public static func text(at address: String, tls: TLSIdentity?, group: EventLoopGroup,
                            timeout: Duration = .seconds(5)) async throws -> String {
        guard let (host, port) = split(address) else { throw Failure(description: "metrics address \(address) is not host:port") }
        let channel: Channel
        do {
            let connecting = ClientBootstrap(group: group)
                .connectTimeout(.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
                .connect(host: host, port: port)
            channel = try await TLSIdentity.secure(connecting, with: tls, host: host, port: port).get()
        } catch {
            throw Failure(description: "cannot reach the metrics port \(address): \(error)")
        }
        defer { channel.close(promise: nil) }
        let answer = channel.eventLoop.makePromise(of: String.self)
        let expiry = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)) {
            answer.fail(Failure(description: "no answer from the metrics port \(address) within \(timeout)"))
        }
        defer { expiry.cancel() }
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHTTPClientHandlers()
            try channel.pipeline.syncOperations.addHandler(Collector(address: address, answer: answer))
        }.get()
        return try await answer.futureResult.get()
    }

    /// "host:port" or "[v6]:port" as its parts.
    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    /// Sends the request when added, gathers the body, and fulfils `answer` at its end (or fails it).
    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        typealias OutboundOut = HTTPClientRequestPart

        let address: String
        let answer: EventLoopPromise<String>
        private var status: HTTPResponseStatus = .ok
        private var body = ""

        init(address: String, answer: EventLoopPromise<String>) {
            self.address = address
            self.answer = answer
        }

        func handlerAdded(context: ChannelHandlerContext) {
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/metrics")
            head.headers.add(name: "Host", value: address)
            head.headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                status = head.status
            case .body(var bytes):
                body += bytes.readString(length: bytes.readableBytes) ?? ""
            case .end:
                if status == .ok {
                    answer.succeed(body)
                } else {
                    answer.fail(Failure(description: "the metrics port \(address) answered \(status.code) \(status.reasonPhrase)"))
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            answer.fail(Failure(description: "the metrics port \(address) closed the connection before answering"))
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            answer.fail(Failure(description: "reading the metrics port \(address): \(error)"))
            context.close(promise: nil)
        }
    }
}
