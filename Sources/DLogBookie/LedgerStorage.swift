import DLogIO
#if canImport(Glibc)
import Glibc
#endif
import DLogWire
import Foundation
import Synchronization

/// Entries and ledger state: a write cache in memory for what the journal made durable since the last
/// checkpoint, and sorted entry-log files on the ledger directories for everything before it.
public final class LedgerStorage: Sendable {
    public struct Configuration: Sendable {
        public var ledgerDirectories: [String]
        /// Checkpoint when the cache holds this much; refuse adds (back-pressure) at three times this:
        /// reading stops at 1.5×, and the margin covers frames already read and a checkpoint in flight.
        public var writeCacheBytes: Int
        /// Where the entry logs and the manifest live.
        public var disk: any Disk = PosixDisk()
        /// What paces compaction and scrub (a simulated clock in simulated runs).
        public var clock: any StorageClock = SystemClock()
        public init(ledgerDirectories: [String], writeCacheBytes: Int = 64 << 20) {
            precondition(!ledgerDirectories.isEmpty && writeCacheBytes > 0)
            self.ledgerDirectories = ledgerDirectories
            self.writeCacheBytes = writeCacheBytes
        }
    }

    typealias Cache = [LedgerID: CachedEntries]

    struct Watcher {
        var id: UInt64
        var previous: Int64
        /// The entry the answer brings when this bookie has it (a reader that keeps up asks for the next one).
        var bringing: Int64?
        var fire: @Sendable (Int64, Int64) -> Void

        /// Whether `ls` answers this watcher now. A LAC that no durable entry here carries answers a watcher
        /// that brings an entry only once that entry is stored here, so the reader needs no READ after it.
        /// (Should the entry never come here, the reader's poll of the other bookies answers it.)
        func isAnswered(by ls: LedgerState) -> Bool {
            ls.piggybackLAC > previous || ls.lac > previous && bringing.map { $0 <= ls.lastEntry } ?? true
        }
    }

    struct State {
        var manifest = Manifest()
        var cache: Cache = [:]
        var cacheBytes = 0
        var flushing: Cache? = nil
        var flushingBytes = 0
        var appliedThrough: [JournalPosition?]
        var watchers: [LedgerID: [Watcher]] = [:]
        var nextWatcherID: UInt64 = 1
        var checkpoints: UInt64 = 0
        /// Files dropped from the in-memory manifest, deleted once a persisted manifest no longer lists them.
        var pendingRemoval: [EntryLogInfo] = []
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

        /// Whether `ledger`'s entries, taken when the delete count was `since`, still belong to it.
        func stillLive(_ ledger: UInt64, since: UInt64) -> Bool {
            manifest.ledgers[ledger] != nil && deletedAt[ledger].map { $0 <= since } ?? true
        }
    }

    public let configuration: Configuration
    let state: Mutex<State>
    private let readers = Mutex<[UInt64: EntryLogReader]>([:])
    private let unreadable = Mutex<[UInt64: String]>([:])
    private let repairs = Mutex<[RepairNote]>([])

    /// Opens storage from its ledger index (if any): no scan of entry logs, so this is fast however much is
    /// stored. Refuses (throws `StorageCorruption` naming the file) when no usable index copy is left or a file
    /// it lists is missing; never deletes a file without proof that it is garbage (see `StartupFileAction`).
    public init(configuration: Configuration, journalCount: Int) throws {
        self.configuration = configuration
        for dir in configuration.ledgerDirectories { try configuration.disk.makeDirectory(dir) }
        var store = IndexStore(directories: configuration.ledgerDirectories, disk: configuration.disk)
        let loadStarted = ContinuousClock.now
        let loaded = try store.load()
        let loadTime = ContinuousClock.now - loadStarted
        var manifest = loaded.manifest
        if manifest.journalMarks.count < journalCount {
            manifest.journalMarks += Array(repeating: nil, count: journalCount - manifest.journalMarks.count)
        }
        var report = try Self.sortEntryLogFiles(manifest, directories: configuration.ledgerDirectories,
                                                disk: configuration.disk)
        report.manifestNotes = loaded.notes
        report.indexLoadSeconds = Double(loadTime.components.seconds) + Double(loadTime.components.attoseconds) / 1e18
        report.indexGeneration = store.generation
        startReport = report
        // What the removal list named is unlinked now; the next record need not carry it.
        manifest.removing = []
        manifest.version = Manifest.currentVersion
        checkpointLock = Mutex(store)
        var s = State(appliedThrough: manifest.journalMarks)
        s.manifest = manifest
        state = Mutex(s)
    }

    /// What start-up found in the ledger directories: files removed, quarantined, manifest damage.
    public let startReport: StorageStartReport
    /// One checkpoint or compaction publishes at a time, and only it writes the ledger index.
    let checkpointLock: Mutex<IndexStore>

    /// The generation of the ledger index on disk: counts the checkpoints that wrote it.
    public var indexGeneration: UInt64 { checkpointLock.withLock { $0.generation } }

    public func journalMark(_ journal: Int) -> JournalPosition? { state.withLock { $0.manifest.journalMarks[journal] } }

    public var cacheBytes: Int { sizes.cache.load(ordering: .relaxed) + sizes.flushing.load(ordering: .relaxed) }
    public var cacheFull: Bool { sizes.cache.load(ordering: .relaxed) >= configuration.writeCacheBytes }

    /// The write cache's sizes as of the last change, readable without the state lock: every request asks
    /// whether the cache is under pressure, and taking the lock for that was a second lock per add, contended
    /// by the journal threads applying batches (about 3% of a bookie's CPU at 32×16 adds of 100 B).
    final class Sizes: Sendable {
        let cache = Atomic<Int>(0)
        let flushing = Atomic<Int>(0)

        /// Call under the state lock, after changing `s`'s sizes.
        func update(_ s: State) {
            cache.store(s.cacheBytes, ordering: .relaxed)
            flushing.store(s.flushingBytes, ordering: .relaxed)
        }
    }

    let sizes = Sizes()
    public var ledgerCount: Int { state.withLock { $0.manifest.ledgers.count } }
    /// Every ledger this bookie holds state for, in id order.
    public var ledgerIDs: [LedgerID] { state.withLock { $0.manifest.ledgers.sortedIDs }.map { LedgerID($0) } }
    public var entryLogCount: Int { state.withLock { $0.manifest.entryLogs.count } }
    public var checkpoints: UInt64 { state.withLock { $0.checkpoints } }

    public func ledgerState(_ ledger: LedgerID) -> LedgerState? {
        state.withLock { $0.manifest.ledgers[ledger.rawValue] }
    }

    /// Changes a ledger's state under the lock (used by the bookie's admission checks).
    func withLedgers<T>(_ body: (inout LedgerTable, _ cacheOverLimit: Bool) -> T) -> T {
        let limit = 3 * configuration.writeCacheBytes
        return state.withLock { s in body(&s.manifest.ledgers, s.cacheBytes + s.flushingBytes >= limit) }
    }

    /// `withLedgers` for a request that may raise `ledger`'s LAC: the long polls that answers are answered
    /// (outside the lock) when `body` returns, not after this journal's sync (see `LedgerState`).
    func withLedgers<T>(raising ledger: LedgerID, _ body: (inout LedgerTable, _ cacheOverLimit: Bool) -> T) -> T {
        let limit = 3 * configuration.writeCacheBytes
        var fired: [(@Sendable (Int64, Int64) -> Void, Int64, Int64)] = []
        let result = state.withLock { s in
            let result = body(&s.manifest.ledgers, s.cacheBytes + s.flushingBytes >= limit)
            if let ls = s.manifest.ledgers[ledger.rawValue] { notify(ledger, ls, &s, &fired) }
            return result
        }
        for (fire, lac, last) in fired { fire(lac, last) }
        return result
    }

    // MARK: Applying durable journal records

    /// Applies records that are durable; called on the journal thread and by replay, in journal order.
    /// `replaying`: at start, when no request has changed ledger state ahead of the journal.
    func apply(_ records: [JournalRecord], journal: Int, through position: JournalPosition?, replaying: Bool = false) {
        var fired: [(@Sendable (Int64, Int64) -> Void, Int64, Int64)] = []
        state.withLock { s in
            for r in records { apply(r, to: &s, fired: &fired, replaying: replaying) }
            if let position { s.appliedThrough[journal] = position }
            sizes.update(s)
        }
        for (fire, lac, last) in fired { fire(lac, last) }
    }

    private func apply(_ r: JournalRecord, to s: inout State,
                       fired: inout [(@Sendable (Int64, Int64) -> Void, Int64, Int64)], replaying: Bool) {
        switch r.kind {
        case .add:
            // Checked on add, and by the journal record's own CRC on replay: no need to checksum again.
            guard let header = EntryCodec.header(of: r.payload) else { return }
            let l = header.ledger
            // Not when deleted meanwhile, nor when taken before a delete still pending (of the deleted ledger).
            guard var ls = s.manifest.ledgers[l.rawValue],
                  s.deletesPending.isEmpty || s.deletesPending[l.rawValue] == nil else { return }
            let replaced = s.cache[l, default: CachedEntries()].set(header.entry.rawValue, r.payload)
            s.cacheBytes += r.payload.count - (replaced?.count ?? 0)
            ls.lastEntry = max(ls.lastEntry, header.entry.rawValue)
            ls.heard(piggybacked: header.lastAddConfirmed.rawValue)
            s.manifest.ledgers[l.rawValue] = ls
            notify(l, ls, &s, &fired)
        case .masterKey:
            guard r.payload.count == 8 + MasterKey.byteCount else { return }
            let l = Self.ledger(r.payload)
            // A key record taken before a pending delete must not bring back the ledger that delete removed.
            if s.manifest.ledgers[l] == nil && s.deletesPending[l] == nil {
                s.manifest.ledgers[l] = LedgerState(masterKey: Array(r.payload[8...]))
            }
        case .fence:
            guard r.payload.count == 8 + MasterKey.byteCount else { return }
            let l = Self.ledger(r.payload)
            guard s.deletesPending[l] == nil else { return }
            s.manifest.ledgers[l, default: LedgerState(masterKey: Array(r.payload[8...]))].fenced = true
        case .explicitLAC:
            guard r.payload.count == 16, var ls = s.manifest.ledgers[Self.ledger(r.payload)],
                  s.deletesPending[Self.ledger(r.payload)] == nil else { return }
            let lac = r.payload.withUnsafeBytes { Int64(bitPattern: $0.loadBigEndian(UInt64.self, at: 8)) }
            ls.heard(explicit: lac)
            s.manifest.ledgers[Self.ledger(r.payload)] = ls
            notify(LedgerID(Self.ledger(r.payload)), ls, &s, &fired)
        case .delete:
            guard r.payload.count == 8 else { return }
            let l = Self.ledger(r.payload)
            // Live, the request already dropped the ledger with its entries (`takeDelete`), and an add or fence
            // after it may have created it anew (their records follow this one): only replay drops it here.
            if replaying {
                s.manifest.ledgers[l] = nil
                dropEntries(of: l, &s)
            } else if let pending = s.deletesPending[l] {
                s.deletesPending[l] = pending > 1 ? pending - 1 : nil
            }
        case .batch:
            preconditionFailure("batch records never leave the journal")
        }
    }

    /// Takes a delete: when the ledger exists, `journal` appends its record (returning a refusal, or nil), and
    /// in the same step the ledger is dropped with every entry reads could find of it, in memory and in entry
    /// logs. A ledger created anew under the same id, before the delete is applied, starts empty.
    func takeDelete(_ ledger: LedgerID, journal: () -> BookieResponse?) -> BookieResponse? {
        state.withLock { s in
            let l = ledger.rawValue
            guard s.manifest.ledgers[l] != nil else { return .failed(.noLedger, message: "\(ledger) is not on this bookie") }
            if let refusal = journal() { return refusal }
            s.manifest.ledgers[l] = nil
            s.deletesPending[l, default: 0] += 1
            s.deletes += 1
            if s.flushesRunning > 0 { s.deletedAt[l] = s.deletes }
            dropEntries(of: l, &s)
            sizes.update(s)
            return nil
        }
    }

    /// Drops a deleted ledger's entries from the write cache, the cache being flushed, and the entry logs' lists.
    private func dropEntries(of l: UInt64, _ s: inout State) {
        if let gone = s.cache.removeValue(forKey: LedgerID(l)) { s.cacheBytes -= gone.bytes }
        if let gone = s.flushing?.removeValue(forKey: LedgerID(l)) { s.flushingBytes -= gone.bytes }
        s.manifest.unlist(l)
    }

    /// A checkpoint or compaction starts writing entries it took from the state: returns the delete count its
    /// `stillLive` checks compare with. Call under the state lock, and `endFlush` once it published or failed.
    func beginFlush(_ s: inout State) -> UInt64 {
        s.flushesRunning += 1
        return s.deletes
    }

    func endFlush() {
        state.withLock { s in
            s.flushesRunning -= 1
            if s.flushesRunning == 0 { s.deletedAt = [:] }
        }
    }

    private static func ledger(_ payload: [UInt8]) -> UInt64 { payload.withUnsafeBytes { $0.loadBigEndian(UInt64.self, at: 0) } }

    private func notify(_ l: LedgerID, _ ls: LedgerState, _ s: inout State,
                        _ fired: inout [(@Sendable (Int64, Int64) -> Void, Int64, Int64)]) {
        guard !s.watchers.isEmpty, var list = s.watchers[l] else { return }
        list.removeAll { w in
            guard w.isAnswered(by: ls) else { return false }
            fired.append((w.fire, ls.lac, ls.lastEntry))
            return true
        }
        s.watchers[l] = list.isEmpty ? nil : list
    }

    // MARK: Long poll

    /// Calls `fire(lac, lastEntry)` once LAC passes `previous`: now if it already has (returns nil), or later
    /// (returns an id for `cancelWatch`).
    func watch(_ ledger: LedgerID, previous: Int64, bringing: Int64? = nil,
               fire: @escaping @Sendable (Int64, Int64) -> Void) -> UInt64? {
        let outcome: Result<UInt64, LACNow> = state.withLock { s in
            let ls = s.manifest.ledgers[ledger.rawValue]
            let watcher = Watcher(id: s.nextWatcherID, previous: previous, bringing: bringing, fire: fire)
            if let ls, watcher.isAnswered(by: ls) { return .failure(LACNow(lac: ls.lac, last: ls.lastEntry)) }
            // A ledger not on this bookie yet waits too: a reader tailing a ledger just created polls before
            // its first entry arrives, and answering at once would make it spin.
            s.nextWatcherID += 1
            s.watchers[ledger, default: []].append(watcher)
            return .success(watcher.id)
        }
        switch outcome {
        case .success(let id): return id
        case .failure(let now):
            fire(now.lac, now.last)
            return nil
        }
    }

    private struct LACNow: Error {
        var lac: Int64
        var last: Int64
    }

    /// Long polls waiting now (all ledgers).
    public var waitingLongPolls: Int { state.withLock { $0.watchers.values.reduce(0) { $0 + $1.count } } }

    /// Removes a watcher; true when it had not fired (the caller then answers it).
    func cancelWatch(_ ledger: LedgerID, id: UInt64) -> Bool {
        state.withLock { s in
            guard var list = s.watchers[ledger], let i = list.firstIndex(where: { $0.id == id }) else { return false }
            list.remove(at: i)
            s.watchers[ledger] = list.isEmpty ? nil : list
            return true
        }
    }

    // MARK: Reads

    public enum ReadResult: Sendable {
        case found([UInt8])
        case noLedger
        case noEntry
        /// Not in memory: read from entry logs (off the event loop) with `readFromDisk`.
        case onDisk([UInt64])
    }

    /// Looks in memory; for entry -1 resolves the last entry.
    public func readCached(_ ledger: LedgerID, _ entry: EntryID) -> (EntryID, ReadResult) {
        state.withLock { s in
            guard let ls = s.manifest.ledgers[ledger.rawValue] else { return (entry, .noLedger) }
            guard entry.rawValue >= -1 else { return (entry, .noEntry) }  // only -1 means "last"
            let e = entry.rawValue < 0 ? ls.lastEntry : entry.rawValue
            guard e >= 0 else { return (EntryID(e), .noEntry) }
            if let bytes = s.cache[ledger]?[e] ?? s.flushing?[ledger]?[e] { return (EntryID(e), .found(bytes)) }
            let files = s.manifest.entryLogs.reversed().filter { info in
                info.ledgers[ledger.rawValue].map { e >= $0.first && e <= $0.last } ?? false
            }.map(\.id)
            return (EntryID(e), files.isEmpty ? .noEntry : .onDisk(files))
        }
    }

    /// An entry as read from an entry-log file, with where it was, so damage can be reported by file and offset.
    public struct StoredEntry: Sendable {
        public var bytes: [UInt8]
        public var path: String
        public var offset: Int64
    }

    /// Reads an entry from entry-log files (newest first). Blocking: never call on an event loop.
    public func readFromDisk(_ ledger: LedgerID, _ entry: EntryID, files: [UInt64]) throws -> StoredEntry? {
        for id in files {
            guard let reader = try openReader(id) else {
                // Compacted or removed since the caller looked: look again, once, in the current file list.
                guard case .onDisk(let now) = readCached(ledger, entry).1, !now.contains(id) else { return nil }
                return try readFromDisk(ledger, entry, files: now)
            }
            if let (bytes, offset) = try reader.read(ledger: ledger, entry: entry) {
                return StoredEntry(bytes: bytes, path: reader.path, offset: offset)
            }
        }
        return nil
    }

    /// Entry-log files opened so far (restart opens none).
    public var openEntryLogCount: Int { readers.withLock { $0.count } }

    func readersRemove(_ id: UInt64) -> EntryLogReader? { readers.withLock { $0.removeValue(forKey: id) } }

    /// nil when the manifest no longer lists the file (compacted or removed since the caller looked).
    /// A file whose index cannot be read is rebuilt from its records once (`EntryLogRepair`); a file that
    /// cannot be rebuilt either is remembered as unreadable, so later reads fail at once with the same reason.
    func openReader(_ id: UInt64) throws -> EntryLogReader? {
        if let r = readers.withLock({ $0[id] }) { return r }
        guard let info = state.withLock({ s in s.manifest.entryLogs.first { $0.id == id } }) else { return nil }
        let path = configuration.ledgerDirectories[info.directory] + "/" + EntryLogWriter.fileName(id)
        if let reason = unreadable.withLock({ $0[id] }) { throw StorageCorruption(path: path, reason: reason) }
        let reader: EntryLogReader
        do {
            reader = try EntryLogReader(path: path, disk: configuration.disk)
        } catch let error as SystemError where error.errno == ENOENT {
            return nil  // removed between the lookup and the open
        } catch let damage as StorageCorruption {
            guard let rebuilt = try rebuildIndex(info, damage: damage) else { return nil }
            reader = rebuilt
        }
        // Cache it only while the manifest still lists the file, checked under the state lock that
        // removal also takes first, so a removed file's descriptor is never kept open.
        let listed = state.withLock { s in
            s.manifest.entryLogs.contains { $0.id == id } ? readers.withLock { $0[id] = reader; return true } : false
        }
        return listed ? reader : nil
    }

    /// Rebuilds a damaged file's index under the checkpoint lock (so no compaction replaces the file
    /// meanwhile, and concurrent readers rebuild it once); nil when the file is no longer listed.
    private func rebuildIndex(_ info: EntryLogInfo, damage: StorageCorruption) throws -> EntryLogReader? {
        try checkpointLock.withLock { _ in
            guard state.withLock({ s in s.manifest.entryLogs.contains { $0.id == info.id } }) else { return nil }
            if let reason = unreadable.withLock({ $0[info.id] }) { throw StorageCorruption(path: damage.path, reason: reason) }
            // Another reader may have rebuilt it while this one waited for the lock.
            if let reader = try? EntryLogReader(path: damage.path, disk: configuration.disk) { return reader }
            do {
                let report = try EntryLogRepair.rebuild(id: info.id, directoryIndex: info.directory,
                                                        directory: configuration.ledgerDirectories[info.directory],
                                                        expected: info, disk: configuration.disk)
                repairs.withLock { $0.append(RepairNote(damage: damage.reason, report: report)) }
                return try EntryLogReader(path: damage.path, disk: configuration.disk)
            } catch {
                let reason = "\(damage.reason); rebuilding its index failed: \(error)"
                unreadable.withLock { $0[info.id] = reason }
                throw StorageCorruption(path: damage.path, reason: reason)
            }
        }
    }

    /// An index rebuilt since the last call of `takeRepairs`, for the bookie to log.
    struct RepairNote: Sendable {
        var damage: String
        var report: EntryLogRepair.Report
    }

    func takeRepairs() -> [RepairNote] { repairs.withLock { r in defer { r = [] }; return r } }

    /// Entry logs that can be neither read nor rebuilt, with why.
    public var unreadableEntryLogs: [UInt64: String] { unreadable.withLock { $0 } }
}
