import DLogWire
import Synchronization

extension Cluster {
    // MARK: Ledger metadata

    /// Creates a ledger's metadata; refuses when the id is taken. Returns its version.
    @discardableResult
    public func createLedger(_ id: LedgerID, _ metadata: LedgerMetadata) async throws -> Version {
        if let problem = metadata.problem { throw MetadataError.invalidArgument("ledger \(id): \(problem)") }
        do {
            return try await store.create(ClusterKeys.ledger(id), value: LedgerMetadataCodec.encode(metadata))
        } catch MetadataError.keyExists {
            throw ClusterError.ledgerExists(id)
        }
    }

    public func ledger(_ id: LedgerID) async throws -> (metadata: LedgerMetadata, version: Version)? {
        guard let item = try await store.get(ClusterKeys.ledger(id)) else { return nil }
        return (try Self.decodeLedger(item), item.version)
    }

    /// Replaces a ledger's metadata only if nobody changed it since `version` (a lost race is an error,
    /// never an overwrite). Returns the new version.
    @discardableResult
    public func updateLedger(_ id: LedgerID, _ metadata: LedgerMetadata, ifVersion version: Version) async throws -> Version {
        if let problem = metadata.problem { throw MetadataError.invalidArgument("ledger \(id): \(problem)") }
        return try await store.put(ClusterKeys.ledger(id), value: LedgerMetadataCodec.encode(metadata), ifVersion: version)
    }

    /// The operation that writes `metadata` as ledger `id`'s record, for a transaction that changes it together
    /// with other records (after checking it, as `updateLedger` does).
    public func ledgerUpdate(_ id: LedgerID, _ metadata: LedgerMetadata) throws -> Transaction.Operation {
        if let problem = metadata.problem { throw MetadataError.invalidArgument("ledger \(id): \(problem)") }
        return .put(key: ClusterKeys.ledger(id), value: LedgerMetadataCodec.encode(metadata), lease: nil)
    }

    /// Deletes a ledger's metadata, and its under-replication marks with it (nothing is left to heal).
    public func deleteLedger(_ id: LedgerID, ifVersion version: Version) async throws {
        _ = try await store.commit(Transaction(checks: [.init(key: ClusterKeys.ledger(id), version: version)],
                                               operations: [.delete(key: ClusterKeys.ledger(id)),
                                                            .delete(key: RecoveryKeys.marks(id))]))
    }

    /// Visits every ledger in id order, a page at a time, so memory stays bounded however many there are.
    /// Returns the revision the first page was read at: a watch from the one after it misses no change the
    /// listing did not see.
    @discardableResult
    public func forEachLedger(_ body: (LedgerID, LedgerMetadata, Version) async throws -> Void) async throws -> Revision {
        try await forEachItem(under: ClusterKeys.ledgers) { item in
            guard let id = ClusterKeys.ledgerID(fromKey: item.key) else {
                throw ClusterError.corruptRecord(key: item.key, why: "not a ledger key")
            }
            try await body(id, try Self.decodeLedger(item), item.version)
        }
    }

    /// Visits every key under `prefix` in key order, 500 at a time, so memory stays bounded. Returns the revision
    /// the first page was read at.
    @discardableResult
    func forEachItem(under prefix: String, _ body: (KeyValue) async throws -> Void) async throws -> Revision {
        var range = KeyRange.prefix(prefix)
        var first: Revision?
        while true {
            let page = try await store.range(range, limit: 500)
            if first == nil { first = page.revision }
            for item in page.items { try await body(item) }
            guard page.more, let last = page.items.last else { return first ?? page.revision }
            range = range.after(last.key)
        }
    }

    /// The ids of every ledger in metadata.
    public func ledgerIDs() async throws -> Set<LedgerID> {
        var ids = Set<LedgerID>()
        try await forEachLedger { id, _, _ in ids.insert(id) }
        return ids
    }

    static func decodeLedger(_ item: KeyValue) throws -> LedgerMetadata {
        do {
            return try LedgerMetadataCodec.decode(item.value)
        } catch {
            throw ClusterError.corruptRecord(key: item.key, why: error.description)
        }
    }
}

/// Hands out cluster-unique ledger ids. It reserves them from the store in blocks by compare-and-set on
/// one counter, so concurrent allocators (in any process) never get the same id, and most allocations
/// cost no round trip. Ids of a block not used before the process ends are simply never used.
///
/// One reservation at a time per allocator: callers that find the block used up wait for the reservation in
/// flight instead of each racing the others for a block of its own (256 streams opening at once lost 64
/// compare-and-sets in a row that way). A block used up within a second makes the next one twice as large, up
/// to `blockSizeMax`, so a burst of opens costs few round trips; a quiet allocator goes back to `blockSize`.
public final class LedgerIDAllocator: Sendable {
    public let cluster: Cluster
    public let blockSize: UInt64
    public let blockSizeMax: UInt64

    private struct State {
        var next: UInt64 = 0
        var end: UInt64 = 0
        var reserving: Task<(UInt64, UInt64), any Error>?
        var size: UInt64
        var lastReserved: ContinuousClock.Instant?
    }
    private let state: Mutex<State>

    public init(cluster: Cluster, blockSize: UInt64 = 100, blockSizeMax: UInt64 = 10_000) {
        precondition(blockSize >= 1 && blockSizeMax >= blockSize)
        self.cluster = cluster
        self.blockSize = blockSize
        self.blockSizeMax = blockSizeMax
        state = Mutex(State(size: blockSize))
    }

    public func next() async throws -> LedgerID {
        while true {
            let (id, reservation) = state.withLock { s -> (UInt64?, Task<(UInt64, UInt64), any Error>?) in
                if s.next < s.end {
                    defer { s.next += 1 }
                    return (s.next, nil)
                }
                if let pending = s.reserving { return (nil, pending) }
                let now = ContinuousClock.now
                s.size = s.lastReserved.map { now - $0 < .seconds(1) } == true ? min(s.size * 2, blockSizeMax) : blockSize
                s.lastReserved = now
                let size = s.size
                let task = Task { try await self.reserve(size) }
                s.reserving = task
                return (nil, task)
            }
            if let id { return LedgerID(id) }
            guard let reservation else { continue }
            let result = await reservation.result
            state.withLock { s in
                guard s.reserving == reservation else { return }  // another waiter installed it already
                s.reserving = nil
                if case .success(let (start, end)) = result, s.next >= s.end { (s.next, s.end) = (start, end) }
            }
            if case .failure(let error) = result { throw error }
        }
    }

    /// Moves the counter forward by `blockSize` ids; retries (bounded) when another allocator moved it first.
    private func reserve(_ blockSize: UInt64) async throws -> (UInt64, UInt64) {
        let key = ClusterKeys.ledgerIDCounter
        for attempt in 0..<64 {
            let current = try await cluster.store.get(key)
            var start: UInt64 = 1
            if let current {
                // Never guess at a counter that does not parse: restarting it would hand out ids twice.
                guard let stored = UInt64(String(decoding: current.value, as: UTF8.self)), stored > 0 else {
                    throw ClusterError.corruptRecord(key: key, why: "not a ledger id counter")
                }
                start = stored
            }
            let (end, overflow) = start.addingReportingOverflow(blockSize)
            guard !overflow, end < UInt64(Int64.max) else {
                throw MetadataError.internalError("ledger ids are exhausted")
            }
            do {
                _ = try await cluster.store.commit(Transaction(
                    checks: [.init(key: key, version: current?.version ?? .absent)],
                    operations: [.put(key: key, value: Array(String(end).utf8), lease: nil)]))
                return (start, end)
            } catch let error as MetadataError {
                switch error {
                case .versionConflict, .keyExists, .noSuchKey:
                    try await Task.sleep(for: .microseconds(Int.random(in: 0...(200 << min(attempt, 6)))))
                default:
                    throw error
                }
            }
        }
        throw MetadataError.unavailable("could not reserve ledger ids: 64 attempts lost to other allocators")
    }
}
