import NIOCore

/// The requests of one client connection waiting for their answers, by request id: ids are handed out in
/// order, an answer takes its promise, and when the connection goes every waiting promise fails. Lives on the
/// connection's event loop (inside its handler).
///
/// Inlinable, so each client module gets it specialized for its reply type: called across modules as generic
/// code, every request looked up the dictionary's type metadata at run time (with `ChannelOutbox`, about 9% of a
/// bookie client's CPU at 32 × 16 adds).
public struct PendingReplies<Reply: Sendable> {
    @usableFromInline var nextID: UInt64 = 1
    @usableFromInline var waiting: [UInt64: EventLoopPromise<Reply>] = [:]
    /// Set by `failAll`: later requests fail at once.
    @usableFromInline var isClosed = false

    public var closed: Bool { isClosed }

    @inlinable public init() {}

    /// Registers `promise` under a new request id; after `failAll` fails it with `closedError` and returns nil.
    @inlinable
    public mutating func add(_ promise: EventLoopPromise<Reply>, closedError: any Error) -> UInt64? {
        guard !isClosed else {
            promise.fail(closedError)
            return nil
        }
        defer { nextID += 1 }
        waiting[nextID] = promise
        return nextID
    }

    /// The promise waiting for `id`'s answer, removed; nil when none waits (answered, or failed already).
    @inlinable
    public mutating func take(_ id: UInt64) -> EventLoopPromise<Reply>? { waiting.removeValue(forKey: id) }

    @inlinable
    public func isWaiting(_ id: UInt64) -> Bool { waiting[id] != nil }

    /// Fails every waiting promise with `error`; later requests fail at once.
    @inlinable
    public mutating func failAll(_ error: any Error) {
        isClosed = true
        let all = waiting
        waiting = [:]
        for promise in all.values { promise.fail(error) }
    }
}
