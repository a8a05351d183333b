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
        /// Shards of the ledger state, each under a lock of its own (1–`shardsMax`; see `LedgerShards`).
        public var shards: Int
        /// One shard below 4 cores, where more cost lock hand-offs and bought nothing (docs/storage.md,
        /// "The ledger core"); else one per core, so each event loop mostly has a lock of its own.
        public static var defaultShards: Int {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            return cores < 4 ? 1 : min(cores, shardsMax)
        }
        /// At most 64: a journal batch marks the shards it touches in one word.
        public static let shardsMax = 64
        public init(ledgerDirectories: [String], writeCacheBytes: Int = 64 << 20, shards: Int = defaultShards) {
            precondition(!ledgerDirectories.isEmpty && writeCacheBytes > 0)
            self.ledgerDirectories = ledgerDirectories
            self.writeCacheBytes = writeCacheBytes
            self.shards = shards
        }
    }

    typealias Cache = LedgerCore.Cache

    public let configuration: Configuration
    /// The ledger state and the entry-log catalog, written only through their events (see `LedgerShards`).
    let ledgers: LedgerShards
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
        ledgers = LedgerShards(manifest: manifest, shardCount: configuration.shards,
                               cacheBytesMax: 3 * configuration.writeCacheBytes)
    }

    /// What start-up found in the ledger directories: files removed, quarantined, manifest damage.
    public let startReport: StorageStartReport
    /// One checkpoint or compaction publishes at a time, and only it writes the ledger index.
    let checkpointLock: Mutex<IndexStore>

    /// The generation of the ledger index on disk: counts the checkpoints that wrote it.
    public var indexGeneration: UInt64 { checkpointLock.withLock { $0.generation } }

    public func journalMark(_ journal: Int) -> JournalPosition? {
        ledgers.catalog.withLock { $0.manifest.journalMarks[journal] }
    }

    public var cacheBytes: Int { ledgers.sizes.total }
    public var cacheFull: Bool { ledgers.sizes.cache.load(ordering: .relaxed) >= configuration.writeCacheBytes }

    public var ledgerCount: Int { ledgers.ledgerCount }
    /// Every ledger this bookie holds state for, in id order.
    public var ledgerIDs: [LedgerID] { ledgers.sortedLedgerIDs.map { LedgerID($0) } }
    public var entryLogCount: Int { ledgers.catalog.withLock { $0.manifest.entryLogs.count } }
    public var checkpoints: UInt64 { ledgers.catalog.withLock { $0.checkpoints } }

    public func ledgerState(_ ledger: LedgerID) -> LedgerState? {
        ledgers.withShard(ledger.rawValue) { $0.ledgers[ledger.rawValue] }
    }

    /// Takes a request the journal records (see `LedgerShards.take`).
    func take(_ request: LedgerCore.Request,
              journal: (_ withKey: Bool) -> JournalError?) -> Result<Void, Refusal> {
        ledgers.take(request, journal: journal)
    }

    /// A run of adds taken together (see `LedgerShards.take(adds:journal:)`).
    func take(adds: [LedgerCore.Request],
              journal: (_ accepted: [(index: Int, withKey: Bool)]) -> JournalError?) -> [Result<Void, Refusal>] {
        ledgers.take(adds: adds, journal: journal)
    }

    /// Why `take` refused a request.
    enum Refusal: Error, Equatable {
        case core(LedgerCore.Refusal)
        case journal(JournalError)
    }

    /// WRITE_LAC (see `LedgerCore.writeLAC`).
    func writeLAC(_ ledger: LedgerID, key: MasterKey, lac: EntryID) -> LedgerCore.Refusal? {
        ledgers.writeLAC(ledger, key: key, lac: lac.rawValue)
    }

    // MARK: Applying durable journal records

    /// Applies records that are durable; called on the journal thread and by replay, in journal order.
    /// `replaying`: at start, when no request has changed ledger state ahead of the journal.
    func apply(_ records: [JournalRecord], journal: Int, through position: JournalPosition?, replaying: Bool = false) {
        ledgers.durable(records, journal: journal, through: position, replaying: replaying)
    }

    // MARK: Long poll

    /// Calls `fire(lac, lastEntry)` once LAC passes `previous`: now if it already has (returns nil), or later
    /// (returns an id for `cancelWatch`).
    func watch(_ ledger: LedgerID, previous: Int64,
               fire: @escaping @Sendable (Int64, Int64) -> Void) -> UInt64? {
        switch ledgers.watch(ledger, previous: previous, fire: fire) {
        case .waiting(let id):
            return id
        case .now(let lac, let last):
            fire(lac, last)
            return nil
        }
    }

    /// Long polls waiting now (all ledgers).
    public var waitingLongPolls: Int { ledgers.waitingLongPolls }

    /// Whether a watcher still waits (it has not fired, nor been cancelled).
    func isWatching(_ ledger: LedgerID, id: UInt64) -> Bool { ledgers.isWatching(ledger, id: id) }

    /// Removes a watcher; true when it had not fired (the caller then answers it).
    func cancelWatch(_ ledger: LedgerID, id: UInt64) -> Bool { ledgers.cancelWatch(ledger, id: id) }

    // MARK: Reads

    public enum ReadResult: Sendable {
        case found([UInt8])
        case noLedger
        case noEntry
        /// Not in memory: read from entry logs (off the event loop) with `readFromDisk`.
        case onDisk([UInt64])
    }

    /// Looks in memory; for entry -1 resolves the last entry.
    /// Which entry logs may hold an entry is looked up outside the locks, in the list as it was when the cache
    /// missed (an array shared, not copied): that search grows with the entry logs, and under the lock it held up
    /// every add and every journal batch.
    public func readCached(_ ledger: LedgerID, _ entry: EntryID) -> (EntryID, ReadResult) {
        let (resolved, lookup): (EntryID, CacheLookup) = ledgers.withShard(ledger.rawValue) { s in
            guard let ls = s.ledgers[ledger.rawValue] else { return (entry, .answer(.noLedger)) }
            guard entry.rawValue >= -1 else { return (entry, .answer(.noEntry)) }  // only -1 means "last"
            let e = entry.rawValue < 0 ? ls.lastEntry : entry.rawValue
            guard e >= 0 else { return (EntryID(e), .answer(.noEntry)) }
            if let bytes = s.cache[ledger]?[e] ?? s.flushing?[ledger]?[e] { return (EntryID(e), .answer(.found(bytes))) }
            return (EntryID(e), .search(ledgers.catalog.withLock { $0.manifest.entryLogs }))
        }
        switch lookup {
        case .answer(let result):
            return (resolved, result)
        case .search(let entryLogs):
            let e = resolved.rawValue
            let files = entryLogs.reversed().filter { info in
                info.ledgers[ledger.rawValue].map { e >= $0.first && e <= $0.last } ?? false
            }.map(\.id)
            return (resolved, files.isEmpty ? .noEntry : .onDisk(files))
        }
    }

    private enum CacheLookup {
        case answer(ReadResult)
        /// Not in memory: search these entry logs.
        case search([EntryLogInfo])
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

    /// `ledger`'s entries from `entry` on, through at most `last`, as entry-log file `file` holds them back to back,
    /// up to `maxBytes` (see `EntryLogReader.readRun`): one read where `readFromDisk` makes two per entry. Empty
    /// when that file is gone or does not hold `entry`. Unchecked, like `readFromDisk`. Blocking.
    public func readRunFromDisk(_ ledger: LedgerID, _ entry: EntryID, through last: EntryID, file id: UInt64,
                                maxBytes: Int) throws -> [(entry: EntryID, stored: StoredEntry)] {
        guard let reader = try openReader(id) else { return [] }
        return try reader.readRun(ledger: ledger, from: entry, through: last, maxBytes: maxBytes).map {
            ($0.entry, StoredEntry(bytes: $0.bytes, path: reader.path, offset: $0.offset))
        }
    }

    /// Entry-log files opened so far (restart opens none).
    public var openEntryLogCount: Int { readers.withLock { $0.count } }

    func readersRemove(_ id: UInt64) -> EntryLogReader? { readers.withLock { $0.removeValue(forKey: id) } }

    /// nil when the manifest no longer lists the file (compacted or removed since the caller looked).
    /// A file whose index cannot be read is rebuilt from its records once (`EntryLogRepair`); a file that
    /// cannot be rebuilt either is remembered as unreadable, so later reads fail at once with the same reason.
    func openReader(_ id: UInt64) throws -> EntryLogReader? {
        if let r = readers.withLock({ $0[id] }) { return r }
        // Searched outside the lock, in the list as it is now (shared, not copied).
        guard let info = ledgers.catalog.withLock({ $0.manifest.entryLogs }).first(where: { $0.id == id }) else { return nil }
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
        // Cache it only while the catalog still lists the file, checked under the catalog's lock that
        // removal also takes first, so a removed file's descriptor is never kept open.
        let listed = ledgers.catalog.withLock { s in
            s.manifest.entryLogs.contains { $0.id == id } ? readers.withLock { $0[id] = reader; return true } : false
        }
        return listed ? reader : nil
    }

    /// Rebuilds a damaged file's index under the checkpoint lock (so no compaction replaces the file
    /// meanwhile, and concurrent readers rebuild it once); nil when the file is no longer listed.
    private func rebuildIndex(_ info: EntryLogInfo, damage: StorageCorruption) throws -> EntryLogReader? {
        try checkpointLock.withLock { _ in
            guard ledgers.catalog.withLock({ s in s.manifest.entryLogs.contains { $0.id == info.id } }) else { return nil }
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
