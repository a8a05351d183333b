import CSQLite

/// The embedded store's state and its one thread's work: requests are taken in batches, run one after
/// another inside one SQLite transaction, committed with one fsync, and only then answered. Watch events of
/// the batch are published after the commit, so no watcher ever sees a change that could still be lost.
///
/// Confined to the store thread; nothing here is shared.
final class EmbeddedEngine {
    struct Watcher {
        var sink: WatchSink
        /// Events up to this revision were handed to the watcher already (by its catch-up).
        var delivered: Revision
    }

    let db: SQLiteDatabase
    let sql: EmbeddedStatements
    let historyRevisions: Int64
    private(set) var revision: Revision
    private(set) var compacted: Revision
    private(set) var leases: [LeaseID: (ttlSeconds: Int, deadline: ContinuousClock.Instant)] = [:]
    private var watchers: [UInt64: Watcher] = [:]
    var stats = EmbeddedStats()

    // Per batch: replies to send and events to publish once the commit returned.
    private var replies: [() -> Void] = []
    private var failures: [(MetadataError) -> Void] = []
    private var events: [WatchEvent] = []
    /// This batch's own events for watchers registered in it, delivered after the commit.
    private var catchUps: [(sink: WatchSink, chunks: [[WatchEvent]])] = []
    /// The revision of the last commit, before this batch: history up to it is durable and may be sent.
    private var committedRevision = Revision.zero
    private var registeredInBatch: [UInt64] = []
    /// Rows of history read for one watcher at a time: bounds memory however far back a watch starts.
    let catchUpRowsMax: Int
    /// Bytes of keys and values held for one watcher's catch-up page.
    static let catchUpBytesMax = 16 << 20

    init(directory: String, historyRevisions: Int64, catchUpRowsMax: Int = 10_000) throws {
        precondition(historyRevisions >= 1 && catchUpRowsMax >= 1)
        self.historyRevisions = historyRevisions
        self.catchUpRowsMax = catchUpRowsMax
        db = try SQLiteDatabase(path: directory + "/" + EmbeddedSchema.fileName)
        try db.execute(EmbeddedSchema.statements)
        sql = try EmbeddedStatements(db)
        let format = try Self.meta(sql, "format")
        guard format <= EmbeddedSchema.format else {
            throw SQLiteDatabase.Failure(code: 0, message: "\(db.path) has format \(format); this dlogd reads format \(EmbeddedSchema.format) and older — upgrade dlogd")
        }
        if format == 0 { try sql.setMeta.run([.text("format"), .integer(EmbeddedSchema.format)]) }
        // Every change writes its event in the same transaction as the revision counter; taking the larger
        // of the two means a version can never be handed out twice, whatever a damaged counter says.
        var newestEvent: Int64 = 0
        try sql.newestEvent.run([]) { newestEvent = $0.int64(0) }
        revision = Revision(Swift.max(try Self.meta(sql, "revision"), newestEvent))
        compacted = Revision(try Self.meta(sql, "compacted"))
        // Lease deadlines are not persisted; the wall-clock time of the last batch is, and bounds when any
        // holder last renewed: a lease lives on only as long as its holder may still think it holds it.
        let now = ContinuousClock.now
        let recorded = try Self.meta(sql, LeaseRestart.metaName)
        let nowMilliseconds = LeaseRestart.nowMilliseconds
        try sql.allLeases.run([]) { row in
            let ttl = Int(row.int64(1))
            leases[LeaseID(row.int64(0))] = (ttl, now + LeaseRestart.remaining(
                ttlSeconds: ttl, recordedMilliseconds: recorded, nowMilliseconds: nowMilliseconds))
        }
    }

    private static func meta(_ sql: EmbeddedStatements, _ name: String) throws -> Int64 {
        var value: Int64 = 0
        try sql.getMeta.run([.text(name)]) { value = $0.int64(0) }
        return value
    }

    var nextLeaseDeadline: ContinuousClock.Instant? { leases.values.map(\.deadline).min() }

    // MARK: Batches

    enum Outcome: Equatable {
        case committed
        /// Nothing of the batch applied; every request was answered with the error. The store goes on.
        case failed
        /// The database can no longer be trusted (an I/O error): the role must stop.
        case fatal(String)
    }

    /// Runs `batch` (and the expiry of leases past their deadline) in one SQLite transaction, and answers
    /// every request of it, whatever happens.
    func process(_ batch: [StoreRequest], now: ContinuousClock.Instant) -> Outcome {
        let before = (revision, compacted, leases)
        committedRevision = revision
        var next = 0
        do {
            try sql.begin.run([])
            for (id, lease) in leases where lease.deadline <= now { try removeLease(id) }
            while next < batch.count {
                try run(batch[next], now: now)
                next += 1
            }
            try trimHistoryIfDue()
            try sql.setMeta.run([.text("revision"), .integer(revision.rawValue)])
            try sql.setMeta.run([.text(LeaseRestart.metaName), .integer(LeaseRestart.nowMilliseconds)])
            // SQLite ends a transaction by itself on some errors; statements after that would each have
            // committed alone. Every error ends the batch at once, so this cannot happen: check it anyway.
            guard db.inTransaction else {
                throw SQLiteDatabase.Failure(code: SQLITE_IOERR, message: "the batch's transaction ended early")
            }
            try sql.commit.run([])
        } catch {
            _ = try? sql.rollback.run([])
            (revision, compacted, leases) = before
            let failure = error as? SQLiteDatabase.Failure
            let message = "metadata database \(db.path): \(error)"
            let fatal = failure.map { Self.isFatal($0.code) } ?? true
            let toCaller: MetadataError = failure?.code == SQLITE_FULL
                ? .unavailable("disk full under \(db.path); the change was not applied") : .internalError(message)
            for fail in failures { fail(toCaller) }
            // The request that failed and those after it never registered an answer: refuse them here.
            for request in batch[next...] { request.refuse(toCaller) }
            // Watchers registered in the rolled-back batch hold revisions that no longer exist: end them,
            // they resume from what they received.
            for id in registeredInBatch {
                watchers.removeValue(forKey: id)?.sink.end(.unavailable("metadata store could not commit; resume the watch"))
            }
            resetBatch()
            return fatal ? .fatal(message) : .failed
        }
        stats.batches += 1
        for reply in replies { reply() }
        for (sink, chunks) in catchUps {
            for chunk in chunks where !sink.deliver(chunk) {
                watchers[sink.id] = nil
                break
            }
        }
        publish(events)
        resetBatch()
        return .committed
    }

    /// An I/O error may mean a lost fsync: never carry on as if the data were safe (DESIGN invariant 6).
    private static func isFatal(_ code: Int32) -> Bool {
        let primary = code & 0xFF
        return primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB
            || primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY
    }

    private func resetBatch() {
        replies.removeAll(keepingCapacity: true)
        failures.removeAll(keepingCapacity: true)
        events.removeAll(keepingCapacity: true)
        catchUps.removeAll(keepingCapacity: true)
        registeredInBatch.removeAll(keepingCapacity: true)
    }

    private func run(_ request: StoreRequest, now: ContinuousClock.Instant) throws {
        switch request {
        case .range(let range, let limit, let reply):
            do {
                try MetadataLimits.validate(range: range, limit: limit)
            } catch {
                return answer(reply, .failure(error))
            }
            // A database error is the batch's failure, never swallowed as one request's.
            answer(reply, .success(try readRange(range, limit: limit)))
        case .commit(let transaction, let reply):
            answer(reply, try apply(transaction))
        case .subscribe(let sink, let from):
            try register(sink, from: from)
        case .unsubscribe(let id):
            watchers[id] = nil
        case .grant(let ttl, let reply):
            answer(reply, try grant(ttlSeconds: ttl, now: now))
        case .keepAlive(let id, let reply):
            guard let lease = leases[id] else { return answer(reply, .failure(.leaseExpired(id))) }
            leases[id]!.deadline = now + .seconds(lease.ttlSeconds)
            answer(reply, .success(lease.ttlSeconds))
        case .revoke(let id, let reply):
            guard leases[id] != nil else { return answer(reply, .failure(.leaseExpired(id))) }
            try removeLease(id)
            answer(reply, .success(()))
        case .stats(let reply):
            var snapshot = stats
            snapshot.revision = revision.rawValue
            snapshot.compactedRevision = compacted.rawValue
            snapshot.leases = leases.count
            snapshot.watchers = watchers.count
            replies.append { reply(snapshot) }
            failures.append { _ in reply(snapshot) }
        }
    }

    private func answer<T>(_ reply: @escaping @Sendable (Result<T, MetadataError>) -> Void,
                           _ result: Result<T, MetadataError>) {
        replies.append { reply(result) }
        failures.append { reply(.failure($0)) }
    }

    // MARK: Reads and writes

    func readRange(_ range: KeyRange, limit: Int) throws -> RangePage {
        var items: [KeyValue] = []
        var bytes = 0
        var more = false
        let rows = { (row: SQLiteStatement) in
            guard items.count < limit, bytes < MetadataLimits.rangePageBytesMax else { more = true; return }
            let item = Self.keyValue(row)
            bytes += item.key.utf8.count + item.value.count
            items.append(item)
        }
        if let end = range.end {
            try sql.rangeKV.run([.blob(Array(range.start.utf8)), .blob(Array(end.utf8)), .integer(Int64(limit) + 1)],
                                row: rows)
        } else {
            try sql.getKV.run([.blob(Array(range.start.utf8))], row: rows)
        }
        return RangePage(items: items, more: more, revision: revision)
    }

    private static func keyValue(_ row: SQLiteStatement) -> KeyValue {
        let lease = row.int64(4)
        return KeyValue(key: String(decoding: row.blob(0), as: UTF8.self), value: row.blob(1),
                        version: Version(row.int64(3)), createRevision: Revision(row.int64(2)),
                        lease: lease == 0 ? nil : LeaseID(lease))
    }

    private func version(of key: String) throws -> Version {
        var version = Version.absent
        try sql.getKV.run([.blob(Array(key.utf8))]) { version = Version($0.int64(3)) }
        return version
    }

    /// Checks first, then writes: a refused transaction leaves nothing behind.
    private func apply(_ transaction: Transaction) throws -> Result<Revision, MetadataError> {
        do { try MetadataLimits.validate(transaction) } catch { return .failure(error) }
        for check in transaction.checks {
            let actual = try version(of: check.key)
            if actual != check.version {
                return .failure(.failedCheck(key: check.key, expected: check.version, actual: actual))
            }
        }
        for case .put(_, _, let lease?) in transaction.operations where leases[lease] == nil {
            return .failure(.leaseExpired(lease))
        }
        if let refusal = try leaseKeyLimitRefusal(transaction) { return .failure(refusal) }
        let next = revision.next
        var seq: Int64 = 0
        for operation in transaction.operations {
            switch operation {
            case .put(let key, let value, let lease):
                try sql.putKV.run([.blob(Array(key.utf8)), .blob(value), .integer(next.rawValue),
                                   .integer(lease?.rawValue ?? 0)])
                try record(WatchEvent(kind: .put, key: key, value: value, revision: next), seq: &seq)
            case .delete(let key):
                guard try version(of: key) != .absent else { continue }
                try sql.deleteKV.run([.blob(Array(key.utf8))])
                try record(WatchEvent(kind: .delete, key: key, value: [], revision: next), seq: &seq)
            }
        }
        if seq > 0 { revision = next }
        stats.commits += 1
        return .success(revision)
    }

    /// Refuses a transaction that would bind more than `keysPerLeaseMax` keys to one lease.
    private func leaseKeyLimitRefusal(_ transaction: Transaction) throws -> MetadataError? {
        var adding: [LeaseID: Int] = [:]
        for case .put(let key, _, let lease?) in transaction.operations {
            var current: Int64 = 0
            try sql.getKV.run([.blob(Array(key.utf8))]) { current = $0.int64(4) }
            if current != lease.rawValue { adding[lease, default: 0] += 1 }
        }
        for (lease, added) in adding {
            var bound: Int64 = 0
            try sql.countOfLease.run([.integer(lease.rawValue)]) { bound = $0.int64(0) }
            if Int(bound) + added > MetadataLimits.keysPerLeaseMax {
                return .tooLarge("\(lease) would hold \(Int(bound) + added) keys (limit \(MetadataLimits.keysPerLeaseMax))")
            }
        }
        return nil
    }

    private func record(_ event: WatchEvent, seq: inout Int64) throws {
        try sql.insertEvent.run([.integer(event.revision.rawValue), .integer(seq), .integer(Int64(event.kind.rawValue)),
                                 .blob(Array(event.key.utf8)), .blob(event.value)])
        seq += 1
        events.append(event)
    }

    // MARK: Leases

    private func grant(ttlSeconds: Int, now: ContinuousClock.Instant) throws -> Result<Lease, MetadataError> {
        do { try MetadataLimits.validate(ttlSeconds: ttlSeconds) } catch { return .failure(error) }
        var id: LeaseID
        repeat { id = LeaseID(Int64.random(in: 1...Int64.max)) } while leases[id] != nil
        try sql.insertLease.run([.integer(id.rawValue), .integer(Int64(ttlSeconds))])
        leases[id] = (ttlSeconds, now + .seconds(ttlSeconds))
        return .success(Lease(id: id, ttlSeconds: ttlSeconds))
    }

    /// Deletes the lease and every key bound to it, all at one revision.
    private func removeLease(_ id: LeaseID) throws {
        var keys: [[UInt8]] = []
        try sql.keysOfLease.run([.integer(id.rawValue)]) { keys.append($0.blob(0)) }
        if !keys.isEmpty {
            let next = revision.next
            var seq: Int64 = 0
            for key in keys {
                try sql.deleteKV.run([.blob(key)])
                try record(WatchEvent(kind: .delete, key: String(decoding: key, as: UTF8.self), value: [],
                                      revision: next), seq: &seq)
            }
            revision = next
        }
        try sql.deleteLease.run([.integer(id.rawValue)])
        leases[id] = nil
    }

    // MARK: Watches

    /// Registers a watcher and sends it the history it asked for, at this point of the batch, so the events
    /// of later requests reach it exactly once. History is read a page at a time (memory stays bounded however
    /// far back the watch starts); committed pages go out at once, this batch's own events after the commit.
    private func register(_ sink: WatchSink, from: Revision) throws {
        guard from.rawValue >= 0 else { return sink.end(.invalidArgument("negative watch revision \(from)")) }
        do { try MetadataLimits.validate(range: sink.range, limit: 1) } catch { return sink.end(error) }
        let start = from == .zero ? revision.next : from
        guard start > compacted else { return sink.end(.compacted(requested: start, oldest: compacted.next)) }
        var next = start
        while next <= revision {
            var page: [WatchEvent] = []
            var first: Revision?
            var last = next
            var bytes = 0
            // Rows bound the page, and so do bytes (values may be 1 MiB): once over the budget, the page stops
            // at the next revision boundary and the rest is read with the next page.
            var stoppedAt: Revision?
            let rows = try sql.eventsFrom.run([.integer(next.rawValue), .integer(Int64(catchUpRowsMax))]) { row in
                let rowRevision = Revision(row.int64(0))
                guard stoppedAt == nil else { return }
                if bytes >= Self.catchUpBytesMax, rowRevision != last {
                    stoppedAt = rowRevision
                    return
                }
                last = rowRevision
                if first == nil { first = last }
                let before = page.count
                Self.append(row, for: sink, to: &page)
                if page.count > before { bytes += page[before].key.utf8.count + page[before].value.count }
            }
            if let stoppedAt {
                next = stoppedAt
            } else if rows < catchUpRowsMax {
                next = revision.next
            } else if first == last {
                // One revision larger than a page (a lease holding many keys expired): read it whole.
                page = []
                try sql.eventsAt.run([.integer(last.rawValue)]) { row in Self.append(row, for: sink, to: &page) }
                next = last.next
            } else {
                // The page may end inside revision `last`: read that revision again with the next page.
                page.removeAll { $0.revision == last }
                next = last
            }
            let pending = page.filter { $0.revision > committedRevision }
            for chunk in Self.chunks(page.filter { $0.revision <= committedRevision }) where !sink.deliver(chunk) {
                return
            }
            if !pending.isEmpty { catchUps.append((sink, Self.chunks(pending))) }
        }
        watchers[sink.id] = Watcher(sink: sink, delivered: Swift.max(revision, Revision(start.rawValue - 1)))
        registeredInBatch.append(sink.id)
    }

    private static func append(_ row: SQLiteStatement, for sink: WatchSink, to history: inout [WatchEvent]) {
        let key = String(decoding: row.blob(2), as: UTF8.self)
        guard sink.range.contains(key) else { return }
        history.append(WatchEvent(kind: WatchEvent.Kind(rawValue: UInt8(row.int64(1))) ?? .put, key: key,
                                  value: row.blob(3), revision: Revision(row.int64(0))))
    }

    /// Splits events into deliveries of at most ~1000 events or 4 MiB, never inside one revision.
    static func chunks(_ events: [WatchEvent]) -> [[WatchEvent]] {
        var out: [[WatchEvent]] = []
        var current: [WatchEvent] = []
        var bytes = 0
        for event in events {
            if let last = current.last, last.revision != event.revision,
               current.count >= 1000 || bytes >= MetadataLimits.rangePageBytesMax {
                out.append(current)
                current = []
                bytes = 0
            }
            current.append(event)
            bytes += event.key.utf8.count + event.value.count
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    private func publish(_ events: [WatchEvent]) {
        guard !events.isEmpty, !watchers.isEmpty else { return }
        for (id, watcher) in watchers {
            let mine = events.filter { $0.revision > watcher.delivered && watcher.sink.range.contains($0.key) }
            for chunk in Self.chunks(mine) where !watcher.sink.deliver(chunk) {
                watchers[id] = nil
                break
            }
        }
    }

    /// Ends every watch (the store is stopping or failed).
    func endWatchers(_ error: MetadataError) {
        for watcher in watchers.values { watcher.sink.end(error) }
        watchers.removeAll()
    }

    private func trimHistoryIfDue() throws {
        let keepFrom = revision.rawValue - historyRevisions
        guard keepFrom - compacted.rawValue >= max(1, historyRevisions / 16) else { return }
        try sql.trimEvents.run([.integer(keepFrom)])
        compacted = Revision(keepFrom)
        try sql.setMeta.run([.text("compacted"), .integer(keepFrom)])
    }
}
