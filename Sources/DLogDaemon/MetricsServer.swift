import DLogWire
import NIOCore
import NIOHTTP1
import NIOPosix

/// Prometheus text on `GET /metrics` over HTTP, from `render`, which the role builds from its live counters
/// at each scrape. Anything else is 404. Off unless the role's `metrics_port` is set. With `tls`, it speaks HTTPS
/// the way the role's port speaks TLS (a scraper in `required` mode shows a certificate the cluster CA signed).
final class MetricsServer: Sendable {
    let group: MultiThreadedEventLoopGroup
    let channel: Channel
    var port: Int { channel.localAddress?.port ?? 0 }

    init(host: String, port: Int, tls: ServerTLS? = nil, render: @escaping @Sendable () -> String) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.add(to: channel)
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(MetricsHandler(render: render))
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let render: @Sendable () -> String
    private var path = ""
    private var keepAlive = true

    init(render: @escaping @Sendable () -> String) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.method == .GET ? head.uri : ""
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let found = path == "/metrics" || path.hasPrefix("/metrics?")
            let text = found ? render() : "not found: only GET /metrics is served here\n"
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            headers.add(name: "Content-Length", value: "\(text.utf8.count)")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: found ? .ok : .notFound, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
            // A scraper that asked to close (or an HTTP/1.0 one) gets the connection closed after the answer.
            if keepAlive {
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}

/// Prometheus text exposition, one metric at a time.
struct PrometheusText {
    private(set) var text = ""
    /// Put on every sample (a standalone's bookies are told apart by `bookie`).
    var labels: [String: String] = [:]

    init(labels: [String: String] = [:]) { self.labels = labels }

    mutating func metric(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [String: String], value: Double)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for sample in samples {
            let labels = sample.labels.merging(self.labels) { own, _ in own }.sorted { $0.key < $1.key }
                .map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",")
            let value = sample.value.rounded() == sample.value && abs(sample.value) < 1e15 ? String(Int64(sample.value)) : String(sample.value)
            text += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
        }
    }

    /// Several texts as one: each family once, with the samples of every text that has it (the parts of a
    /// standalone each render the same families, told apart by their labels). Families keep the order they
    /// first appear in.
    static func merge(_ texts: [String]) -> String {
        var order: [String] = []
        var headers: [String: [Substring]] = [:]
        var samples: [String: [Substring]] = [:]
        for text in texts {
            var family = ""
            for line in text.split(separator: "\n") {
                if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                    family = String(line.dropFirst(7).prefix { $0 != " " })
                    if headers[family] == nil { order.append(family) }
                    if !(headers[family]?.contains(line) ?? false) { headers[family, default: []].append(line) }
                } else {
                    samples[family, default: []].append(line)
                }
            }
        }
        var out = ""
        for family in order {
            for line in (headers[family] ?? []) + (samples[family] ?? []) { out += line + "\n" }
        }
        return out
    }
}
