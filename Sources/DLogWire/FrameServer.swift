import Dispatch
import NIOCore
import NIOPosix

/// The TCP listener every role serves the common frame on, with the event loops it owns: each connection
/// gets a frame decoder (frames up to `maxFrameBytes`) and then the role's handler, built per connection by
/// `makeHandler`.
public final class FrameServer: Sendable {
    public let group: MultiThreadedEventLoopGroup
    /// Whether `close()` stops the event loops: not when the caller lent them (it shares them with its clients).
    let ownsGroup: Bool
    let channel: Channel
    /// What the connections hold: slots, unfinished frames' bytes (`ConnectionLimits`).
    public let budget: ConnectionBudget

    public var localAddress: SocketAddress? { channel.localAddress }

    /// Serves on `group` when given (the caller stops it), else on `threads` event loops of its own. Each
    /// connection's handler gets frames, or with `splitsFrames` the bytes as read (it splits them itself, with a
    /// `FrameSplitter`). With `tls`, TLS comes first in every connection's pipeline (`ServerTLS.add`); then a
    /// `ConnectionGuard` holds it to `budget`'s limits (the defaults, reported nowhere, when not given).
    public init(host: String, port: Int, threads: Int, group shared: MultiThreadedEventLoopGroup? = nil,
                maxFrameBytes: Int, splitsFrames: Bool = false, tls: ServerTLS? = nil, budget: ConnectionBudget? = nil,
                makeHandler: @escaping @Sendable () -> any ChannelHandler) throws {
        group = shared ?? MultiThreadedEventLoopGroup(numberOfThreads: threads)
        ownsGroup = shared == nil
        let budget = budget ?? ConnectionBudget(limits: ConnectionLimits()) { _ in }
        self.budget = budget
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?.add(to: channel)
                        try channel.pipeline.syncOperations.addHandler(
                            ConnectionGuard(budget: budget, peer: ServerTLS.describe(channel.remoteAddress)))
                        if !splitsFrames {
                            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                        }
                        try channel.pipeline.syncOperations.addHandler(makeHandler())
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            if ownsGroup { try? group.syncShutdownGracefully() }
            throw error
        }
    }

    /// Stops taking connections; open ones are served (their answers still drain) until `close()`.
    public func stopAccepting() {
        try? channel.close().wait()
    }

    /// Stops taking connections and stops its own event loops, which closes the open connections too; on lent
    /// loops the connections stay open until their owner stops them.
    public func close() {
        try? channel.close().wait()
        if ownsGroup { try? group.syncShutdownGracefully() }
    }

    /// Whether every event loop runs a task within `timeout` (a watchdog's proof that they make progress).
    public func eventLoopsRespond(within timeout: Duration) -> Bool {
        let loops = Array(group.makeIterator())
        let answered = DispatchSemaphore(value: 0)
        for loop in loops { loop.execute { answered.signal() } }
        let (seconds, attoseconds) = timeout.components
        let deadline = DispatchTime.now() + .nanoseconds(Int(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        for _ in loops where answered.wait(timeout: deadline) == .timedOut { return false }
        return true
    }
}

/// A role's server built on one `FrameServer`: its address, its stop and the watchdog's probe are the
/// listener's.
public protocol FrameListening {
    var listener: FrameServer { get }
    /// Closes open connections and stops the event loops (a server with more to release adds to it).
    func close()
}

extension FrameListening {
    public var localAddress: SocketAddress? { listener.localAddress }
    /// Stops taking connections; open ones are served (their answers still drain) until `close()`.
    public func stopAccepting() { listener.stopAccepting() }
    public func close() { listener.close() }
    /// Whether every event loop runs a task within `timeout` (the watchdog's proof that they make progress).
    public func eventLoopsRespond(within timeout: Duration) -> Bool { listener.eventLoopsRespond(within: timeout) }
}
