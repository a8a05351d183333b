import NIOCore
import NIOPosix

/// The TCP listener every role serves the common frame on: each connection gets a frame decoder (frames up to
/// `maxFrameBytes`) and then the role's handler, built per connection by `makeHandler`.
public enum FrameServer {
    public static func bind(group: EventLoopGroup, host: String, port: Int, maxFrameBytes: Int,
                            makeHandler: @escaping @Sendable () -> any ChannelHandler) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
                    try channel.pipeline.syncOperations.addHandler(makeHandler())
                }
            }
            .bind(host: host, port: port).wait()
    }
}
