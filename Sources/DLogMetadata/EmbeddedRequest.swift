/// What callers hand the embedded store's thread. Replies are closures so the metadata role's network
/// handlers can answer without a task per request; the async API wraps them in continuations.
enum StoreRequest: Sendable {
    case range(KeyRange, limit: Int, reply: @Sendable (Result<RangePage, MetadataError>) -> Void)
    case commit(Transaction, reply: @Sendable (Result<Revision, MetadataError>) -> Void)
    case subscribe(WatchSink, from: Revision)
    case unsubscribe(UInt64)
    case grant(ttlSeconds: Int, reply: @Sendable (Result<Lease, MetadataError>) -> Void)
    case keepAlive(LeaseID, reply: @Sendable (Result<Int, MetadataError>) -> Void)
    case revoke(LeaseID, reply: @Sendable (Result<Void, MetadataError>) -> Void)
    case stats(reply: @Sendable (EmbeddedStats) -> Void)

    /// Bytes a request holds, for the queue's byte bound.
    var weight: Int {
        switch self {
        case .commit(let transaction, _):
            return transaction.operations.reduce(64) { total, operation in
                if case .put(let key, let value, _) = operation { return total + key.utf8.count + value.count }
                return total + operation.key.utf8.count
            }
        default:
            return 64
        }
    }

    /// Answers the request with `error` without running it (store full, failed or shut down).
    func refuse(_ error: MetadataError) {
        switch self {
        case .range(_, _, let reply): reply(.failure(error))
        case .commit(_, let reply): reply(.failure(error))
        case .subscribe(let sink, _): sink.end(error)
        case .unsubscribe: break
        case .grant(_, let reply): reply(.failure(error))
        case .keepAlive(_, let reply): reply(.failure(error))
        case .revoke(_, let reply): reply(.failure(error))
        case .stats(let reply): reply(EmbeddedStats())
        }
    }
}

/// Where a watch's events go. `deliver` returns false when the watcher can take no more (it went away or
/// fell behind); the store then forgets it without calling `end`.
public final class WatchSink: Sendable {
    public let id: UInt64
    public let range: KeyRange
    let deliver: @Sendable ([WatchEvent]) -> Bool
    let end: @Sendable (MetadataError) -> Void

    public init(id: UInt64, range: KeyRange, deliver: @escaping @Sendable ([WatchEvent]) -> Bool,
                end: @escaping @Sendable (MetadataError) -> Void) {
        self.id = id
        self.range = range
        self.deliver = deliver
        self.end = end
    }
}

public struct EmbeddedStats: Sendable, Hashable, Codable {
    public var revision: Int64 = 0
    public var compactedRevision: Int64 = 0
    public var leases = 0
    public var watchers = 0
    public var commits: UInt64 = 0
    /// SQLite transactions; commits per batch is the group-commit factor.
    public var batches: UInt64 = 0
    public init() {}
}
