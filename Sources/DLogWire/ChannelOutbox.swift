import NIOCore
import Synchronization

/// Requests from any thread for one client connection, written by one event-loop task per turn as one
/// `[Item]` with one flush: many tasks sharing a connection then cost one hop and one write system call per
/// batch, not per request. `refused` gets every item that finds the channel closed (nothing else would answer
/// it). Inlinable, as `PendingReplies` is, so each client module gets it specialized for its item type.
public final class ChannelOutbox<Item: Sendable>: Sendable {
    @usableFromInline let channel: Channel
    @usableFromInline let refused: @Sendable (Item) -> Void
    @usableFromInline let state = Mutex<(items: [Item], scheduled: Bool)>(([], false))

    @inlinable
    public init(channel: Channel, refused: @escaping @Sendable (Item) -> Void) {
        self.channel = channel
        self.refused = refused
    }

    @inlinable
    public func send(_ item: Item) {
        let schedule = state.withLock { s -> Bool in
            s.items.append(item)
            defer { s.scheduled = true }
            return !s.scheduled
        }
        if schedule { channel.eventLoop.execute { self.drain() } }
    }

    @inlinable
    internal func drain() {
        let batch = state.withLock { s -> [Item] in
            s.scheduled = false
            defer { s.items.removeAll(keepingCapacity: true) }
            return s.items
        }
        guard channel.isActive else {
            for item in batch { refused(item) }
            return
        }
        // The batch goes down the pipeline as one write (the handler's OutboundIn is `[Item]`), so the handler
        // encodes it into one buffer: one pipeline pass and one allocation per batch, not per request. Once
        // written, the handler answers each item: on its response, or when the channel closes.
        channel.writeAndFlush(batch, promise: nil)
    }
}
