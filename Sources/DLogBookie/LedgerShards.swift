import DLogIO
import DLogWire
import Synchronization

/// The bookie's ledger state, sharded by ledger id, with the entry-log catalog beside it: the driver of
/// `LedgerCore` (one per shard) and `EntryLogCatalog`. Each shard has a lock of its own, so an add, a long poll
/// or a read of one ledger waits only for work on ledgers of the same shard, and a journal batch holds each shard
/// only while applying that shard's records. Before, one lock covered every ledger, and a batch of hundreds of
/// records held up every add for its whole length.
///
/// Lock order: shards in index order, then the catalog. Most steps take one shard (and the catalog after it
/// when the step needs the entry logs); a checkpoint's freeze and publish, and a compaction's publish, take them
/// all (`withEveryShard`), so they see every ledger at one moment. No I/O is done under any of these locks.
final class LedgerShards: Sendable {
    final class Shard: Sendable {
        let state: PlainMutex<LedgerCore>
        init(_ core: LedgerCore) { state = PlainMutex(core) }
    }

    let shards: [Shard]
    let catalog: Mutex<EntryLogCatalog>
    /// Refuse adds at this many bytes in the caches and the caches being flushed, all shards together.
    let cacheBytesMax: Int
    let sizes = Sizes()

    static let shardsMax = LedgerStorage.Configuration.shardsMax

    /// Splits `manifest`'s ledger table among `shardCount` shards; the rest becomes the catalog.
    init(manifest: Manifest, shardCount: Int, cacheBytesMax: Int) {
        precondition((1...Self.shardsMax).contains(shardCount) && cacheBytesMax > 0)
        var tables = Array(repeating: LedgerTable(), count: shardCount)
        if shardCount == 1 {
            tables[0] = manifest.ledgers  // shared, not copied: a million ledgers are 64 MB
        } else {
            // In id order, so each shard's table is built by appending (see `LedgerTable`).
            manifest.ledgers.forEach { id, state in tables[Self.index(id, of: shardCount)].restore(id, state) }
        }
        shards = tables.map { Shard(LedgerCore(ledgers: $0)) }
        catalog = Mutex(EntryLogCatalog(manifest: manifest))
        self.cacheBytesMax = cacheBytesMax
    }

    /// Which shard holds `ledger`. Ids are handed out in blocks, so they are mixed first: consecutive ids land in
    /// different shards.
    static func index(_ ledger: UInt64, of count: Int) -> Int {
        count == 1 ? 0 : Int(truncatingIfNeeded: (ledger &* 0x9E37_79B9_7F4A_7C15) >> 32) % count
    }

    func shard(_ ledger: UInt64) -> Shard { shards[Self.index(ledger, of: shards.count)] }

    /// The write cache's sizes, all shards together, readable without any lock: every add asks whether the
    /// cache is under pressure.
    final class Sizes: Sendable {
        let cache = Atomic<Int>(0)
        let flushing = Atomic<Int>(0)

        /// Runs `body` on a shard (under its lock) and adds what it changed of the shard's sizes.
        func tracking<R>(_ core: inout LedgerCore, _ body: (inout LedgerCore) -> R) -> R {
            let (cache0, flushing0) = (core.cacheBytes, core.flushingBytes)
            let result = body(&core)
            if core.cacheBytes != cache0 { cache.wrappingAdd(core.cacheBytes - cache0, ordering: .relaxed) }
            if core.flushingBytes != flushing0 { flushing.wrappingAdd(core.flushingBytes - flushing0, ordering: .relaxed) }
            return result
        }

        var total: Int { cache.load(ordering: .relaxed) + flushing.load(ordering: .relaxed) }
    }

    // MARK: Requests the journal records

    /// Takes a request the journal records, as one step under its ledger's shard lock: the core decides,
    /// `journal` appends the records it asked for (returning nil, or the journal's refusal), and the core takes
    /// the request. So a ledger's journal records are in the order its requests were decided in. A delete also
    /// leaves the entry logs' lists in that step. Long polls the request answers are answered after the lock.
    func take(_ request: LedgerCore.Request,
              journal: (_ withKey: Bool) -> JournalError?) -> Result<Void, LedgerStorage.Refusal> {
        let ledger: LedgerID
        switch request {
        case .add(let l, _, _, _):
            if sizes.total >= cacheBytesMax { return .failure(.core(.cacheFull)) }
            ledger = l
        case .fence(let l, _), .delete(let l):
            ledger = l
        }
        var firings = LedgerCore.Firings()
        let result: Result<Void, LedgerStorage.Refusal> = shard(ledger.rawValue).state.withLock { core in
            switch core.decide(request) {
            case .refuse(let refusal):
                return .failure(.core(refusal))
            case .journal(let withKey):
                if let refusal = journal(withKey) { return .failure(.journal(refusal)) }
                guard case .delete = request else {
                    // An add's bytes count once durable: the hot path of adds changes no size.
                    core.taken(request, &firings)
                    return .success(())
                }
                sizes.tracking(&core) { $0.taken(request, &firings) }
                catalog.withLock { $0.manifest.unlist(ledger.rawValue) }
                return .success(())
            }
        }
        firings.run()
        return result
    }

    /// Takes a run of adds (those one read of one connection brought) in one step per shard among them, instead
    /// of one per add: under the shard's lock the core decides them all (`decide(adds:)`), `journal` appends the
    /// records of those it accepts in one offer, all or none (given their indices in `adds` and whether each
    /// needs a key record first), and the core takes them. So each add is still decided, journaled and taken in
    /// one step, in order; a run costs one lock and one journal offer per shard. Returns each add's outcome.
    func take(adds: [LedgerCore.Request],
              journal: (_ accepted: [(index: Int, withKey: Bool)]) -> JournalError?) -> [Result<Void, LedgerStorage.Refusal>] {
        if sizes.total >= cacheBytesMax { return adds.map { _ in .failure(.core(.cacheFull)) } }
        var results = [Result<Void, LedgerStorage.Refusal>](repeating: .success(()), count: adds.count)
        var firings = LedgerCore.Firings()
        func step(_ s: Int, _ indices: [Int]) {
            shards[s].state.withLock { core in
                var accepted: [(index: Int, withKey: Bool)] = []
                accepted.reserveCapacity(indices.count)
                for (i, decision) in zip(indices, core.decide(adds: indices.map { adds[$0] })) {
                    switch decision {
                    case .refuse(let refusal): results[i] = .failure(.core(refusal))
                    case .journal(let withKey): accepted.append((i, withKey))
                    }
                }
                guard !accepted.isEmpty else { return }
                if let refusal = journal(accepted) {
                    for a in accepted { results[a.index] = .failure(.journal(refusal)) }
                    return
                }
                // An add's bytes count once durable: taking adds changes no size.
                for a in accepted { core.taken(adds[a.index], &firings) }
            }
        }
        if shards.count == 1 {
            step(0, Array(adds.indices))
        } else {
            var byShard = [[Int]](repeating: [], count: shards.count)
            for (i, request) in adds.enumerated() {
                guard case .add(let ledger, _, _, _) = request else { preconditionFailure("adds only") }
                byShard[Self.index(ledger.rawValue, of: shards.count)].append(i)
            }
            for (s, indices) in byShard.enumerated() where !indices.isEmpty { step(s, indices) }
        }
        firings.run()
        return results
    }

    /// WRITE_LAC (see `LedgerCore.writeLAC`).
    func writeLAC(_ ledger: LedgerID, key: MasterKey, lac: Int64) -> LedgerCore.Refusal? {
        var firings = LedgerCore.Firings()
        let refusal = shard(ledger.rawValue).state.withLock { $0.writeLAC(ledger, key: key, lac: lac, &firings) }
        firings.run()
        return refusal
    }

    // MARK: Durable journal records

    /// Records the journal made durable, in journal order, through `position` of journal `journal`: each shard's
    /// records are applied under its lock, in their order (a ledger's records are all in one shard), and the
    /// journal's applied mark moves only after all of them are in.
    func durable(_ records: [JournalRecord], journal: Int, through position: JournalPosition?, replaying: Bool = false) {
        var firings = LedgerCore.Firings()
        if shards.count == 1 {
            apply(records, shard: 0, replaying: replaying, &firings) { _ in true }
        } else {
            var owners = [UInt8](repeating: UInt8.max, count: records.count)
            var touched: UInt64 = 0
            for (i, r) in records.enumerated() {
                guard let ledger = LedgerCore.ledger(of: r) else { continue }  // names none: changes nothing
                let s = Self.index(ledger, of: shards.count)
                owners[i] = UInt8(s)
                touched |= 1 << UInt64(s)
            }
            for s in shards.indices where touched & (1 << UInt64(s)) != 0 {
                apply(records, shard: s, replaying: replaying, &firings) { owners[$0] == UInt8(s) }
            }
        }
        if let position { catalog.withLock { $0.appliedThrough[journal] = position } }
        firings.run()
    }

    private func apply(_ records: [JournalRecord], shard s: Int, replaying: Bool, _ firings: inout LedgerCore.Firings,
                       owned: (Int) -> Bool) {
        shards[s].state.withLock { core in
            var removed: [UInt64] = []
            sizes.tracking(&core) { core in
                for (i, r) in records.enumerated() where owned(i) {
                    if let gone = core.durable(r, replaying: replaying, &firings) { removed.append(gone) }
                }
            }
            if !removed.isEmpty { catalog.withLock { c in for l in removed { c.manifest.unlist(l) } } }
        }
    }

    // MARK: One shard, one catalog, or all

    /// Runs `body` on `ledger`'s shard, under its lock.
    func withShard<R: Sendable>(_ ledger: UInt64, _ body: (inout LedgerCore) -> R) -> R {
        shard(ledger).state.withLock { body(&$0) }
    }

    /// Every shard and the catalog, locked, for a step that must see all ledgers at one moment. The pointers are
    /// valid only inside `body`.
    struct Every {
        let shards: [UnsafeMutablePointer<LedgerCore>]
        let catalog: UnsafeMutablePointer<EntryLogCatalog>

        func core(_ ledger: UInt64) -> UnsafeMutablePointer<LedgerCore> {
            shards[LedgerShards.index(ledger, of: shards.count)]
        }

        /// Whether `ledger`'s entries, taken when each shard's delete count was `since[shard]`, still belong to it.
        func stillLive(_ ledger: UInt64, since: [UInt64]) -> Bool {
            core(ledger).pointee.stillLive(ledger, since: since[LedgerShards.index(ledger, of: shards.count)])
        }
    }

    /// Locks every shard in index order, then the catalog, and runs `body` with all of them.
    func withEveryShard<R: Sendable>(_ body: (Every) -> R) -> R {
        var locked: [UnsafeMutablePointer<LedgerCore>] = []
        locked.reserveCapacity(shards.count)
        func lock(_ i: Int) -> R {
            guard i < shards.count else {
                return catalog.withLock { c in
                    withUnsafeMutablePointer(to: &c) { body(Every(shards: locked, catalog: $0)) }
                }
            }
            return shards[i].state.withLock { core in
                withUnsafeMutablePointer(to: &core) { p in
                    locked.append(p)
                    return lock(i + 1)
                }
            }
        }
        return lock(0)
    }

    // MARK: Long polls

    func watch(_ ledger: LedgerID, previous: Int64,
               fire: @escaping @Sendable (Int64, Int64) -> Void) -> LedgerCore.WatchOutcome {
        withShard(ledger.rawValue) { $0.watch(ledger, previous: previous, fire: fire) }
    }

    func isWatching(_ ledger: LedgerID, id: UInt64) -> Bool {
        withShard(ledger.rawValue) { $0.isWatching(ledger, id: id) }
    }

    func cancelWatch(_ ledger: LedgerID, id: UInt64) -> Bool {
        withShard(ledger.rawValue) { $0.cancelWatch(ledger, id: id) }
    }

    // MARK: Checkpoints and compaction

    /// What a checkpoint writes: each shard's frozen cache, the live ledgers of all of them in id order (with
    /// the shard each is in), the journal marks the frozen caches are complete up to, and the new entry log's id.
    struct Freeze {
        var parts: [LedgerCore.Freeze]
        var live: [(ledger: LedgerID, shard: Int)]
        var marks: [JournalPosition?]
        var entryLogID: UInt64

        var since: [UInt64] { parts.map(\.since) }

        /// Visits every live frozen entry, in (ledger, entry) order, with its bytes lent where the frozen cache
        /// keeps them: the checkpoint writes them from there, with no copy of any (a retain and a release each).
        func forEachEntry(_ visit: EntryLogWriter.EntryVisitor) throws(SystemError) {
            for (ledger, s) in live {
                try parts[s].frozen[ledger]!.forEachInPlace { id, bytes throws(SystemError) in
                    try visit(ledger, EntryID(id), bytes)
                }
            }
        }

        /// How many entries `entries` has.
        var entryCount: Int { live.reduce(0) { $0 + parts[$1.shard].frozen[$1.ledger]!.count } }
    }

    /// A checkpoint starts: every shard's cache is frozen at one moment, and the marks are the journals' applied
    /// marks at that moment (a batch's mark moves only once all its shards have its records).
    func checkpointStarted() -> Freeze {
        withEveryShard { every in
            let parts = every.shards.map { p in sizes.tracking(&p.pointee) { $0.checkpointStarted() } }
            var live: [(ledger: LedgerID, shard: Int)] = []
            for (s, part) in parts.enumerated() { live += part.live.map { ($0, s) } }
            live.sort { $0.ledger.rawValue < $1.ledger.rawValue }
            let c = every.catalog
            let frozenAny = parts.contains { !$0.frozen.isEmpty }
            let id = frozenAny ? c.pointee.takeEntryLogID() : c.pointee.manifest.nextEntryLogID
            return Freeze(parts: parts, live: live, marks: c.pointee.appliedThrough, entryLogID: id)
        }
    }

    /// The checkpoint's entry log (nil when it had nothing to write) is written: under `every`, it joins the
    /// catalog with the ledgers still live since the freeze, in the same step each shard's frozen cache is
    /// dropped. Returns the journal marks now in force.
    func checkpointWritten(_ entryLog: EntryLogInfo?, _ freeze: Freeze, _ every: Every) -> [JournalPosition?] {
        var info = entryLog
        if var written = info {
            // Ledgers deleted while the file was written are not live in it, even if created anew since.
            let since = freeze.since
            written.ledgers = written.ledgers.keeping { every.stillLive($0, since: since) }
            info = written
        }
        for p in every.shards { sizes.tracking(&p.pointee) { $0.checkpointWritten() } }
        return every.catalog.pointee.checkpointWritten(info, marks: freeze.marks)
    }

    /// The checkpoint's entry log could not be written: each shard takes its frozen entries back.
    func checkpointFailed(_ freeze: Freeze) {
        for (s, part) in freeze.parts.enumerated() {
            shards[s].state.withLock { core in sizes.tracking(&core) { $0.checkpointFailed(part) } }
        }
    }

    /// A compaction starts copying the entry log `id`: returns it (nil when no longer listed) and each shard's
    /// delete count, for `Every.stillLive` at its publish. `flushEnded` once it published or failed.
    func compactionStarted(_ id: UInt64) -> (info: EntryLogInfo, since: [UInt64])? {
        withEveryShard { every in
            guard let info = every.catalog.pointee.manifest.entryLogs.first(where: { $0.id == id }) else { return nil }
            return (info, every.shards.map { $0.pointee.flushStarted() })
        }
    }

    /// A checkpoint or compaction that started its flush in every shard published or failed.
    func flushEnded() {
        for shard in shards { shard.state.withLock { $0.flushEnded() } }
    }

    // MARK: What the whole state holds

    func exists(_ ledger: UInt64) -> Bool { withShard(ledger) { $0.ledgers[ledger] != nil } }

    var ledgerCount: Int { shards.reduce(0) { n, shard in n + shard.state.withLock { $0.ledgers.count } } }

    var sortedLedgerIDs: [UInt64] {
        let all = shards.flatMap { shard in shard.state.withLock { $0.ledgers.sortedIDs } }
        return shards.count == 1 ? all : all.sorted()
    }

    var waitingLongPolls: Int {
        shards.reduce(0) { n, shard in n + shard.state.withLock { $0.watchers.values.reduce(0) { $0 + $1.count } } }
    }
}
