import DLogWire

/// The state of one shard of the bookie's ledgers, and its only writer: their table (keys, fencing, LACs, last
/// entries), their entries in the write cache and the cache being flushed, long-poll watchers, and the
/// bookkeeping of deletes in flight. It does no I/O, takes no lock and calls no closure: events go in as method
/// calls, and what must happen because of them comes out as values (a decision for the journal, watchers to
/// answer, what a checkpoint must write). `LedgerShards` is its driver: it holds each shard under a lock of its
/// own, so adds and journal batches of ledgers in different shards do not wait for each other, and runs each
/// event in one step. What is not a ledger's (entry logs, journal marks) is in `EntryLogCatalog`.
///
/// A request that the journal records goes in twice, in one step of the driver: `decide` says whether it is
/// refused or which records to append, and `taken` applies what it changes at once, after the journal accepted
/// them. So the order of journal records is the order requests were decided in, and a request the journal
/// refuses (queue full, stopped) changes nothing. Its records come back through `durable` once synced.
struct LedgerCore {
    /// A request the journal must record before it is answered.
    enum Request: Equatable {
        /// `piggybackedLAC`: the LAC the entry carries; `recovery`: a recovery add, taken on a fenced ledger.
        case add(LedgerID, key: MasterKey, piggybackedLAC: Int64, recovery: Bool)
        case fence(LedgerID, key: MasterKey)
        case delete(LedgerID)
    }

    enum Decision: Equatable {
        case refuse(Refusal)
        /// Append the request's record; for a ledger new here, after a master-key record (`withKey`).
        case journal(withKey: Bool)
    }

    enum Refusal: Equatable {
        /// The write cache and the cache being flushed are full (`LedgerShards`): adds wait for a checkpoint.
        case cacheFull
        case keyMismatch
        case fenced
        case noLedger
    }

    /// Watchers to answer, with the LAC and last entry to answer them with: run them after leaving the lock.
    struct Firings {
        var due: [(fire: @Sendable (Int64, Int64) -> Void, lac: Int64, last: Int64)] = []

        func run() { for f in due { f.fire(f.lac, f.last) } }
    }

    struct Watcher {
        var id: UInt64
        var previous: Int64
        var fire: @Sendable (Int64, Int64) -> Void

        /// Whether `ls` answers this watcher now: as soon as any LAC past `previous` is known here, whether or
        /// not the entry it would bring is stored here yet. A LAC is the writer's word that the entry is durable
        /// on an ack quorum; this bookie may be the one the quorum did not wait for, whose own sync lags behind
        /// (on a busy disk, by milliseconds to tens of them). The answer then carries the LAC alone and the
        /// reader reads the entry from a bookie that has it, so a tail never waits for the slowest copy.
        func isAnswered(by ls: LedgerState) -> Bool {
            ls.lac > previous
        }
    }

    typealias Cache = [LedgerID: CachedEntries]

    var ledgers = LedgerTable()
    var cache: Cache = [:]
    var cacheBytes = 0
    var flushing: Cache? = nil
    var flushingBytes = 0
    var watchers: [LedgerID: [Watcher]] = [:]
    var nextWatcherID: UInt64 = 1
    /// Deletes taken and not yet applied, per ledger. The journal applies records in the order they were
    /// taken, so a record applied while its ledger has one pending was taken before that delete: it
    /// belongs to the ledger the delete removed, not to one created anew under the same id since.
    var deletesPending: [UInt64: Int] = [:]
    /// Deletes taken so far; with `deletedAt` (a ledger's count at its latest delete, kept while a flush
    /// is running) a checkpoint or compaction tells which of the ledgers it wrote were deleted since it
    /// started, even when one was created anew since.
    var deletes: UInt64 = 0
    var deletedAt: [UInt64: UInt64] = [:]
    var flushesRunning = 0

    init(ledgers: LedgerTable = LedgerTable()) {
        self.ledgers = ledgers
    }

    // MARK: Requests the journal records

    /// Whether `request` is refused, or which records the journal appends for it. Changes nothing.
    func decide(_ request: Request) -> Decision {
        switch request {
        case .add(let ledger, let key, _, let recovery):
            guard let ls = ledgers[ledger.rawValue] else { return .journal(withKey: true) }
            if !ls.hasKey(key) { return .refuse(.keyMismatch) }
            if ls.fenced && !recovery { return .refuse(.fenced) }
            return .journal(withKey: false)
        case .fence(let ledger, let key):
            if let ls = ledgers[ledger.rawValue], !ls.hasKey(key) { return .refuse(.keyMismatch) }
            return .journal(withKey: false)
        case .delete(let ledger):
            return ledgers[ledger.rawValue] == nil ? .refuse(.noLedger) : .journal(withKey: false)
        }
    }

    /// `decide` for a run of adds taken in one step (`LedgerShards.take(adds:journal:)`), each as if the ones
    /// before it were taken already: an add to a ledger that an earlier add of the run creates finds it with that
    /// add's key (one key record per new ledger; another key is refused). Adds change nothing else that `decide`
    /// reads.
    func decide(adds: [Request]) -> [Decision] {
        var created: [UInt64: LedgerState] = [:]
        return adds.map { request in
            guard case .add(let ledger, let key, _, _) = request else { preconditionFailure("adds only") }
            if ledgers[ledger.rawValue] == nil, let made = created[ledger.rawValue] {
                return made.hasKey(key) ? .journal(withKey: false) : .refuse(.keyMismatch)
            }
            let decision = decide(request)
            if decision == .journal(withKey: true) { created[ledger.rawValue] = LedgerState(key: key) }
            return decision
        }
    }

    /// The journal accepted the records `decide` asked for: what the request changes happens now.
    /// - an add's piggybacked LAC is heard at once (tailing readers need not wait for this bookie's sync: see
    ///   `LedgerState`); its entry counts once durable;
    /// - a fence holds for every later request;
    /// - a delete drops the ledger and its entries in memory (the driver, in the same step, drops it from the
    ///   entry logs' lists); a ledger created anew under the same id before the delete is durable starts empty.
    mutating func taken(_ request: Request, _ firings: inout Firings) {
        switch request {
        case .add(let ledger, let key, let lac, _):
            ledgers.update(ledger.rawValue, orInsert: LedgerState(key: key)) { $0.heard(early: lac) }
            // Looked up again only for a ledger someone polls: most adds have none.
            if !watchers.isEmpty, let ls = ledgers[ledger.rawValue] { notify(ledger, ls, &firings) }
        case .fence(let ledger, let key):
            ledgers[ledger.rawValue, default: LedgerState(key: key)].fenced = true
        case .delete(let ledger):
            let l = ledger.rawValue
            precondition(ledgers[l] != nil, "a delete is taken only of a ledger decide found")
            ledgers[l] = nil
            deletesPending[l, default: 0] += 1
            deletes += 1
            if flushesRunning > 0 { deletedAt[l] = deletes }
            dropEntries(of: l)
        }
    }

    /// WRITE_LAC: no journal record; the value lives here and in the next checkpoint.
    mutating func writeLAC(_ ledger: LedgerID, key: MasterKey, lac: Int64, _ firings: inout Firings) -> Refusal? {
        guard let ls = ledgers[ledger.rawValue] else { return .noLedger }
        guard ls.hasKey(key) else { return .keyMismatch }
        ledgers[ledger.rawValue]!.heard(explicit: lac)
        notify(ledger, ledgers[ledger.rawValue]!, &firings)
        return nil
    }

    // MARK: Durable journal records

    /// A record the journal made durable, of a ledger of this shard; records come in journal order.
    /// `replaying`: at start, when no request has changed the state ahead of the journal. Returns the ledger a
    /// replayed delete removed: the driver drops it from the entry logs' lists in the same step.
    @discardableResult
    mutating func durable(_ r: JournalRecord, replaying: Bool = false, _ firings: inout Firings) -> UInt64? {
        switch r.kind {
        case .add:
            // Checked on add, and by the journal record's own CRC on replay: no need to checksum again.
            guard let header = EntryCodec.header(of: r.payload) else { return nil }
            let l = header.ledger
            // Not when deleted meanwhile, nor when taken before a delete still pending (of the deleted ledger).
            guard deletesPending.isEmpty || deletesPending[l.rawValue] == nil,
                  let ls = ledgers.update(l.rawValue, { ls -> LedgerState in
                      ls.lastEntry = max(ls.lastEntry, header.entry.rawValue)
                      ls.heard(piggybacked: header.lastAddConfirmed.rawValue)
                      return ls
                  }) else { return nil }
            let replaced = cache[l, default: CachedEntries()].set(header.entry.rawValue, r.payload)
            cacheBytes += r.payload.count - (replaced?.count ?? 0)
            notify(l, ls, &firings)
        case .masterKey:
            guard r.payload.count == 8 + MasterKey.byteCount else { return nil }
            let l = Self.ledger(r.payload)
            // A key record taken before a pending delete must not bring back the ledger that delete removed.
            if ledgers[l] == nil && deletesPending[l] == nil {
                ledgers[l] = LedgerState(masterKey: Array(r.payload[8...]))
            }
        case .fence:
            guard r.payload.count == 8 + MasterKey.byteCount else { return nil }
            let l = Self.ledger(r.payload)
            guard deletesPending[l] == nil else { return nil }
            ledgers[l, default: LedgerState(masterKey: Array(r.payload[8...]))].fenced = true
        case .explicitLAC:
            let l = Self.ledger(r.payload)
            guard r.payload.count == 16, var ls = ledgers[l], deletesPending[l] == nil else { return nil }
            let lac = r.payload.withUnsafeBytes { Int64(bitPattern: $0.loadBigEndian(UInt64.self, at: 8)) }
            ls.heard(explicit: lac)
            ledgers[l] = ls
            notify(LedgerID(l), ls, &firings)
        case .delete:
            guard r.payload.count == 8 else { return nil }
            let l = Self.ledger(r.payload)
            // Live, `taken` already dropped the ledger with its entries, and an add or fence after it may have
            // created it anew (their records follow this one): only replay drops it here.
            if replaying {
                ledgers[l] = nil
                dropEntries(of: l)
                return l
            } else if let pending = deletesPending[l] {
                deletesPending[l] = pending > 1 ? pending - 1 : nil
            }
        case .batch:
            preconditionFailure("batch records never leave the journal")
        }
        return nil
    }

    /// The ledger a durable record belongs to (which shard applies it); nil for one too short to name it.
    static func ledger(of r: JournalRecord) -> UInt64? {
        switch r.kind {
        case .add: return EntryCodec.header(of: r.payload)?.ledger.rawValue
        case .batch: return nil
        default: return r.payload.count < 8 ? nil : ledger(r.payload)
        }
    }

    private static func ledger(_ payload: [UInt8]) -> UInt64 {
        payload.count < 8 ? 0 : payload.withUnsafeBytes { $0.loadBigEndian(UInt64.self, at: 0) }
    }

    /// Drops a deleted ledger's entries from the write cache and the cache being flushed.
    private mutating func dropEntries(of l: UInt64) {
        if let gone = cache.removeValue(forKey: LedgerID(l)) { cacheBytes -= gone.bytes }
        if let gone = flushing?.removeValue(forKey: LedgerID(l)) { flushingBytes -= gone.bytes }
    }

    // MARK: Long polls

    /// A long poll on `ledger` for a LAC past `previous`: answered now (`.now(lac, last)`), or a watcher kept
    /// under the returned id until a later event answers it or `cancelWatch` removes it. A ledger not here yet
    /// waits too: a reader tailing a ledger just created polls before its first entry arrives, and answering
    /// at once would make it spin.
    mutating func watch(_ ledger: LedgerID, previous: Int64,
                        fire: @escaping @Sendable (Int64, Int64) -> Void) -> WatchOutcome {
        let watcher = Watcher(id: nextWatcherID, previous: previous, fire: fire)
        if let ls = ledgers[ledger.rawValue], watcher.isAnswered(by: ls) {
            return .now(lac: ls.lac, last: ls.lastEntry)
        }
        nextWatcherID += 1
        watchers[ledger, default: []].append(watcher)
        return .waiting(watcher.id)
    }

    enum WatchOutcome: Equatable {
        case now(lac: Int64, last: Int64)
        case waiting(UInt64)
    }

    /// Whether watcher `id` of `ledger` still waits (it has not fired, nor been cancelled).
    func isWatching(_ ledger: LedgerID, id: UInt64) -> Bool {
        watchers[ledger]?.contains { $0.id == id } ?? false
    }

    /// Removes a watcher; true when it had not fired (its owner then answers it).
    mutating func cancelWatch(_ ledger: LedgerID, id: UInt64) -> Bool {
        guard var list = watchers[ledger], let i = list.firstIndex(where: { $0.id == id }) else { return false }
        list.remove(at: i)
        watchers[ledger] = list.isEmpty ? nil : list
        return true
    }

    private mutating func notify(_ l: LedgerID, _ ls: LedgerState, _ firings: inout Firings) {
        guard !watchers.isEmpty, var list = watchers[l] else { return }
        list.removeAll { w in
            guard w.isAnswered(by: ls) else { return false }
            firings.due.append((w.fire, ls.lac, ls.lastEntry))
            return true
        }
        watchers[l] = list.isEmpty ? nil : list
    }

    // MARK: Checkpoints and compaction

    /// Whether `ledger`'s entries, taken when the delete count was `since`, still belong to it.
    func stillLive(_ ledger: UInt64, since: UInt64) -> Bool {
        ledgers[ledger] != nil && deletedAt[ledger].map { $0 <= since } ?? true
    }

    /// A checkpoint or compaction starts writing entries it took from the state: returns the delete count its
    /// `stillLive` checks compare with. `flushEnded` once it published or failed.
    mutating func flushStarted() -> UInt64 {
        flushesRunning += 1
        return deletes
    }

    mutating func flushEnded() {
        precondition(flushesRunning > 0)
        flushesRunning -= 1
        if flushesRunning == 0 { deletedAt = [:] }
    }

    /// What a checkpoint takes from this shard: the frozen cache, the ledgers in it that still exist (in id
    /// order), and the delete count at the freeze.
    struct Freeze {
        var frozen: Cache
        var live: [LedgerID]
        var since: UInt64
    }

    /// A checkpoint starts: the cache is frozen (reads still find it in `flushing`; new adds go to a fresh
    /// cache). Which of its ledgers still exist is looked up now, for them alone: a copy of the whole ledger
    /// table would cost every checkpoint time in proportion to the ledgers, idle ones included.
    mutating func checkpointStarted() -> Freeze {
        precondition(flushing == nil, "one checkpoint at a time")
        let frozen = cache
        flushing = frozen
        flushingBytes = cacheBytes
        cache = [:]
        cacheBytes = 0
        let live = frozen.keys.filter { ledgers[$0.rawValue] != nil }.sorted { $0.rawValue < $1.rawValue }
        return Freeze(frozen: frozen, live: live, since: flushStarted())
    }

    /// The checkpoint's entry log is written and listed (by the driver, in the same step, keeping only the
    /// ledgers `stillLive` since the freeze): the frozen cache is dropped.
    mutating func checkpointWritten() {
        flushing = nil
        flushingBytes = 0
    }

    /// A checkpoint whose entry log could not be written puts the frozen entries back in the cache (newer
    /// adds of the same entry win), so nothing acknowledged leaves memory before it is in an entry log.
    mutating func checkpointFailed(_ freeze: Freeze) {
        for (ledger, entries) in freeze.frozen where stillLive(ledger.rawValue, since: freeze.since) {
            entries.forEach { entry, bytes in
                guard cache[ledger]?[entry] == nil else { return }
                cache[ledger, default: CachedEntries()].set(entry, bytes)
                cacheBytes += bytes.count
            }
        }
        flushing = nil
        flushingBytes = 0
    }
}
