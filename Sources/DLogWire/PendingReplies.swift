import NIOCore

/// The requests of one client connection waiting for their answers, by request id: ids are handed out in
/// order, an answer takes its promise, and when the connection goes every waiting promise fails. Lives on the
/// connection's event loop (inside its handler).
public struct PendingReplies<Reply: Sendable> {
    private var nextID: UInt64 = 1
    private var waiting: [UInt64: EventLoopPromise<Reply>] = [:]
    /// Set by `failAll`: later requests fail at once.
    public private(set) var closed = false

    public init() {}

    /// Registers `promise` under a new request id; after `failAll` fails it with `closedError` and returns nil.
    public mutating func add(_ promise: EventLoopPromise<Reply>, closedError: any Error) -> UInt64? {
        guard !closed else {
            promise.fail(closedError)
            return nil
        }
        defer { nextID += 1 }
        waiting[nextID] = promise
        return nextID
    }

    /// The promise waiting for `id`'s answer, removed; nil when none waits (answered, or failed already).
    public mutating func take(_ id: UInt64) -> EventLoopPromise<Reply>? { waiting.removeValue(forKey: id) }

    public func isWaiting(_ id: UInt64) -> Bool { waiting[id] != nil }

    /// Fails every waiting promise with `error`; later requests fail at once.
    public mutating func failAll(_ error: any Error) {
        closed = true
        let all = waiting
        waiting = [:]
        for promise in all.values { promise.fail(error) }
    }
}
