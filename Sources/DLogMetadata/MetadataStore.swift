/// The coordination contract every other part of the system relies on (DESIGN §6): versioned keys with
/// compare-and-set, all-or-none transactions, ordered range scans, watches from a revision and leases.
///
/// Backends implement the few primitives here; the everyday operations (`get`, `create`, `put(ifVersion:)`,
/// `delete(ifVersion:)`, `list`, `watch`) are built on them once, below, so they behave the same on every
/// backend. Every error thrown is a `MetadataError`.
public protocol MetadataStore: Sendable {
    /// Up to `limit` keys of `range` in byte order, read at one revision.
    func range(_ range: KeyRange, limit: Int) async throws -> RangePage

    /// Applies `transaction` if every check holds; returns the new revision (the version of every key it put).
    /// A failed check throws `versionConflict`, `keyExists` or `noSuchKey` naming the first key that failed.
    func commit(_ transaction: Transaction) async throws -> Revision

    /// One attempt at watching: batches of whole revisions of changes to keys in `range`, from `revision` on,
    /// in order, until the stream ends. It ends by throwing: `unavailable` when the connection was lost or the
    /// consumer fell too far behind (resume from the next revision), anything else for good.
    /// Callers use `watch(_:from:)`, which resumes.
    func subscribe(_ range: KeyRange, from revision: Revision) -> AsyncThrowingStream<[WatchEvent], any Error>

    func grantLease(ttlSeconds: Int) async throws -> Lease
    /// Renews the lease to its full TTL; returns that TTL. Throws `leaseExpired` when it is gone.
    func keepAlive(_ lease: LeaseID) async throws -> Int
    /// Ends the lease now; its keys are deleted. Revoking an unknown lease throws `leaseExpired`.
    func revoke(_ lease: LeaseID) async throws

    /// Releases connections and threads. Later calls throw `unavailable`.
    func shutdown() async
}

extension MetadataStore {
    public func get(_ key: String) async throws -> KeyValue? {
        try MetadataLimits.validate(key: key)
        return try await range(.key(key), limit: 1).items.first
    }

    /// Creates `key`; throws `keyExists` when it is there. Returns the new version.
    @discardableResult
    public func create(_ key: String, value: [UInt8], lease: LeaseID? = nil) async throws -> Version {
        Version(try await commit(Transaction(checks: [.init(key: key, version: .absent)],
                                             operations: [.put(key: key, value: value, lease: lease)])))
    }

    /// Replaces `key` only if its version is still `version`. Returns the new version.
    @discardableResult
    public func put(_ key: String, value: [UInt8], ifVersion version: Version,
                    lease: LeaseID? = nil) async throws -> Version {
        Version(try await commit(Transaction(checks: [.init(key: key, version: version)],
                                             operations: [.put(key: key, value: value, lease: lease)])))
    }

    /// Deletes `key` only if its version is still `version`.
    public func delete(_ key: String, ifVersion version: Version) async throws {
        precondition(version != .absent, "deleting requires the version of an existing key")
        _ = try await commit(Transaction(checks: [.init(key: key, version: version)],
                                         operations: [.delete(key: key)]))
    }

    /// Every key under `prefix`, page by page; refuses past `itemsMax` rather than growing without bound.
    public func list(prefix: String, itemsMax: Int = 100_000) async throws -> RangePage {
        var range = KeyRange.prefix(prefix)
        var items: [KeyValue] = []
        var revision = Revision.zero
        while true {
            let page = try await self.range(range, limit: 1000)
            // Later pages are read at later revisions; the first one is the one a watch may start after.
            if revision == .zero { revision = page.revision }
            items += page.items
            guard items.count <= itemsMax else {
                throw MetadataError.tooLarge("more than \(itemsMax) keys under \(prefix)")
            }
            guard page.more, let last = page.items.last else { break }
            range = range.after(last.key)
        }
        return RangePage(items: items, more: false, revision: revision)
    }

    /// Changes to keys in `range` from `revision` on (`.zero`: from now), surviving reconnects and restarts of
    /// the store: after a lost connection it subscribes again from the revision after the last one delivered.
    public func watch(_ range: KeyRange, from revision: Revision) -> MetadataWatch {
        MetadataWatch(store: self, range: range, from: revision)
    }
}

/// A watch that resumes. Pull-based, so a slow consumer slows the subscription instead of growing a buffer.
public struct MetadataWatch: AsyncSequence, Sendable {
    public typealias Element = WatchEvent
    let store: any MetadataStore
    let range: KeyRange
    let from: Revision

    public func makeAsyncIterator() -> Iterator {
        Iterator(store: store, range: range, next: from)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let store: any MetadataStore
        let range: KeyRange
        var next: Revision
        var inner: AsyncThrowingStream<[WatchEvent], any Error>.AsyncIterator?
        var pending: [WatchEvent] = []
        var pendingIndex = 0
        var backoff = Duration.milliseconds(20)

        init(store: any MetadataStore, range: KeyRange, next: Revision) {
            self.store = store
            self.range = range
            self.next = next
        }

        public mutating func next() async throws -> WatchEvent? {
            while true {
                if pendingIndex < pending.count {
                    pendingIndex += 1
                    return pending[pendingIndex - 1]
                }
                try Task.checkCancellation()
                if next == .zero {
                    // "From now" must be pinned to a revision before subscribing: resuming "from now" after a
                    // lost connection would silently skip what changed meanwhile.
                    do {
                        next = try await store.range(.key(range.start), limit: 1).revision.next
                    } catch let error as MetadataError where error.isRetryable {
                        try await Task.sleep(for: backoff)
                        backoff = Swift.min(backoff * 2, .seconds(1))
                        continue
                    }
                }
                if inner == nil { inner = store.subscribe(range, from: next).makeAsyncIterator() }
                do {
                    guard let batch = try await inner!.next() else { return nil }
                    // Network input: a store that goes backwards is reported, never trusted or trapped on.
                    guard batch.allSatisfy({ $0.revision >= next }) else {
                        throw MetadataError.internalError("the store sent a watch event older than revision \(next)")
                    }
                    pending = batch
                    pendingIndex = 0
                    if let last = batch.last { next = last.revision.next }
                    backoff = .milliseconds(20)
                } catch let error as MetadataError where error.isRetryable {
                    inner = nil
                    try await Task.sleep(for: backoff)
                    backoff = Swift.min(backoff * 2, .seconds(1))
                }
            }
        }
    }
}
