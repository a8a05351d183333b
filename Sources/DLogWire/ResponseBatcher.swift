import NIOCore
import Synchronization

/// Collects the responses of one connection from any thread and writes them in one go on the channel's
/// event loop: a journal batch that acknowledges a hundred adds costs one hop and one write, not a hundred.
public final class ResponseBatcher: Sendable {
    private struct Pending {
        var bytes: ByteBuffer
        var count = 0
        var scheduled = false
    }

    private let channel: Channel
    private let pending: Mutex<Pending>
    /// Runs on the event loop after each write with the number of answers it carried.
    private let written: @Sendable (Int) -> Void

    public init(channel: Channel, written: @escaping @Sendable (Int) -> Void) {
        self.channel = channel
        self.written = written
        pending = Mutex(Pending(bytes: channel.allocator.buffer(capacity: 4096)))
    }

    /// Queues one answer, written by `encode` into the connection's pending bytes.
    public func send(_ encode: (inout ByteBuffer) -> Void) { send(count: 1, encode) }

    /// Queues `count` answers, all written by `encode`, under one lock.
    public func send(count: Int, _ encode: (inout ByteBuffer) -> Void) {
        let schedule = pending.withLock { p -> Bool in
            encode(&p.bytes)
            p.count += count
            if p.scheduled { return false }
            p.scheduled = true
            return true
        }
        if schedule { channel.eventLoop.execute { self.drain() } }
    }

    private func drain() {
        let (bytes, count) = pending.withLock { p -> (ByteBuffer, Int) in
            var out = channel.allocator.buffer(capacity: 4096)
            swap(&out, &p.bytes)
            defer { p.count = 0 }
            p.scheduled = false
            return (out, p.count)
        }
        channel.writeAndFlush(bytes, promise: nil)
        written(count)
    }
}
