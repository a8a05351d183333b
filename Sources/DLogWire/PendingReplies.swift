import NIOCore

/// Who waits for one request's answer: a promise (for callers that await or chain futures), or a callback
/// that the connection's event loop calls with the answer. A callback costs no promise, no future and no
/// callback list per request, which pipelined writers (the ledger writer, dlog-bench) send by the hundred
/// thousand a second.
public enum ReplyWaiter<Reply: Sendable>: Sendable {
    case promise(EventLoopPromise<Reply>)
    case callback(@Sendable (Result<Reply, any Error>) -> Void)

    @inlinable
    public func succeed(_ reply: Reply) {
        switch self {
        case .promise(let promise): promise.succeed(reply)
        case .callback(let callback): callback(.success(reply))
        }
    }

    @inlinable
    public func fail(_ error: any Error) {
        switch self {
        case .promise(let promise): promise.fail(error)
        case .callback(let callback): callback(.failure(error))
        }
    }
}

/// The requests of one client connection waiting for their answers, by request id: ids are handed out in
/// order, an answer takes its waiter, and when the connection goes every waiter fails. Lives on the
/// connection's event loop (inside its handler).
///
/// Inlinable, so each client module gets it specialized for its reply type: called across modules as generic
/// code, every request looked up the dictionary's type metadata at run time (with `ChannelOutbox`, about 9% of a
/// bookie client's CPU at 32 × 16 adds).
public struct PendingReplies<Reply: Sendable> {
    @usableFromInline var nextID: UInt64 = 1
    @usableFromInline var waiting: [UInt64: ReplyWaiter<Reply>] = [:]
    /// Set by `failAll`: later requests fail at once.
    @usableFromInline var isClosed = false

    public var closed: Bool { isClosed }

    @inlinable public init() {}

    /// Registers `waiter` under a new request id; after `failAll` fails it with `closedError` and returns nil.
    /// The error is made only then: boxing one for every request was an allocation per add in a bookie client.
    @inlinable
    public mutating func add(_ waiter: ReplyWaiter<Reply>, closedError: @autoclosure () -> any Error) -> UInt64? {
        guard !isClosed else {
            waiter.fail(closedError())
            return nil
        }
        defer { nextID += 1 }
        waiting[nextID] = waiter
        return nextID
    }

    /// The waiter for `id`'s answer, removed; nil when none waits (answered, or failed already).
    @inlinable
    public mutating func take(_ id: UInt64) -> ReplyWaiter<Reply>? { waiting.removeValue(forKey: id) }

    @inlinable
    public func isWaiting(_ id: UInt64) -> Bool { waiting[id] != nil }

    /// Fails every waiter with `error`; later requests fail at once.
    @inlinable
    public mutating func failAll(_ error: any Error) {
        isClosed = true
        let all = waiting
        waiting = [:]
        for waiter in all.values { waiter.fail(error) }
    }
}
