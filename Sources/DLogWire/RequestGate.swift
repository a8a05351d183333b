import NIOCore

/// The answering side of one server connection, the same for every role: answers go out through a
/// `ResponseBatcher` (one write per event-loop turn), each request counts until its answer is written, and the
/// connection is not read while `limit` requests are unanswered or while its answers pile up unsent. A role
/// may pause for reasons of its own too (`paused`). Lives on the connection's event loop.
public final class RequestGate {
    public private(set) var batcher: ResponseBatcher?
    public var paused = ReadPause()
    private var outstanding = 0
    let limit: Int

    public init(limit: Int) {
        self.limit = limit
    }

    /// From the handler's `handlerAdded`.
    public func added(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        batcher = ResponseBatcher(channel: channel) { written in bound.value.answered(written, channel: channel) }
    }

    /// Counts a request taken from the connection (answered later through `batcher`).
    public func took(channel: Channel) {
        outstanding += 1
        if outstanding >= limit { paused.pause(.outstanding, channel: channel) }
    }

    /// From the handler's `channelWritabilityChanged`: answers the client does not read pile up in the socket
    /// buffer, so stop taking requests until it drains.
    public func writabilityChanged(channel: Channel) {
        paused.followWritability(of: channel)
    }

    /// From the handler's `channelInactive`: the batcher's callback holds the gate (and the handler through
    /// its owner); let go of it, or every closed connection stays in memory.
    public func closed() { batcher = nil }

    /// `count` answers were written (the batcher reports its own; a role calls this for requests answered
    /// another way, such as a watch whose events stream apart).
    public func answered(_ count: Int, channel: Channel) {
        outstanding -= count
        if outstanding <= limit / 2 { paused.resume(.outstanding, channel: channel) }
    }
}
