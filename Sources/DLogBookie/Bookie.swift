import CoreMetrics
import DLogIO
#if canImport(Glibc)
import Glibc
#endif
import DLogWire
import Foundation
import Logging
import Synchronization

/// A bookie: journals, ledger storage, and the rules of each operation (master key, fencing, read-only).
/// Network code calls it; it never touches a socket.
public final class Bookie: JournalSink, Sendable {
    public struct Configuration: Sendable {
        public var journal: Journal.Configuration
        public var journalDirectories: [String]
        public var storage: LedgerStorage.Configuration
        public var checkpointInterval: Duration = .seconds(10)
        public var diskUsageThreshold: Double = 0.95
        public var diskUsageLowWater: Double = 0.90
        public var diskCheckInterval: Duration = .seconds(1)
        public var truncateCorruptJournal = false
        /// Compact an entry log once less than this fraction of it is live.
        public var compactionThreshold: Double = 0.5
        /// Read budget of compaction, so it never crowds out foreground I/O.
        public var compactionBytesPerSecond: Int = 32 << 20
        public var compactionInterval: Duration = .seconds(10)
        /// Whether the bookie runs its background work on threads of its own (a checkpoint thread and a
        /// compaction thread). Without them whoever owns the bookie drives that work: it calls
        /// `backgroundTurn(clock:)` (checkpoints, disk checks) and `runCompaction()` when it chooses. The
        /// simulator does, at points of its seeded run and in simulated time.
        public var backgroundThreads = true
        /// Where the bookie and its journals record their distributions (`BookieMeters`, `JournalMeters`);
        /// nil: `MetricsSystem`'s factory.
        public var metrics: (any MetricsFactory)? = nil
        /// Put on every series of this bookie's (a standalone's bookies are told apart by them).
        public var metricsDimensions: [(String, String)] = []

        public init(journal: Journal.Configuration, journalDirectories: [String], storage: LedgerStorage.Configuration) {
            self.journal = journal
            self.journalDirectories = journalDirectories
            self.storage = storage
        }

        /// Puts the journals and the ledger storage on one disk (a simulated one, in tests), and paces the
        /// storage's background work on `clock` (the simulated disk's own). A simulated disk takes the blocking
        /// journal engine with `.fdatasync` (see `Journal.Configuration.disk`).
        public mutating func place(on disk: any Disk, clock: any StorageClock = SystemClock()) {
            journal.disk = disk
            storage.disk = disk
            storage.clock = clock
        }
    }

    public let configuration: Configuration
    public let journals: [Journal]
    public let storage: LedgerStorage
    let logger: Logger
    let readOnly = Atomic<Bool>(false)
    let checkpointRequested = Atomic<Bool>(false)
    /// What the background thread sleeps on between turns, and the compaction thread between passes.
    let backgroundWakeup = Wakeup()
    let compactionWakeup = Wakeup()
    /// Turns the background thread has taken (tests: an idle bookie's thread sleeps).
    let backgroundTurns = Atomic<Int>(0)
    let operatorReadOnly = Atomic<Bool>(false)
    let draining = Atomic<Bool>(false)
    /// Request service times, for metrics.
    public let meters: BookieMeters
    /// Requests taken from the network, for metrics: adds, reads (with fence reads), long polls for the LAC,
    /// explicit LAC writes, and malformed frames.
    public let addsReceived = Atomic<UInt64>(0)
    public let readsReceived = Atomic<UInt64>(0)
    public let longPollsReceived = Atomic<UInt64>(0)
    public let lacWritesReceived = Atomic<UInt64>(0)
    public let malformedRequests = Atomic<UInt64>(0)
    /// Requests refused as PERMISSION_DENIED (`BookieAccess`).
    public let permissionDenied = Atomic<UInt64>(0)
    let stopping = Atomic<Bool>(false)
    let background = DispatchSemaphore(value: 0)
    /// When background work is due (see `backgroundTurn`); made at the first turn.
    let schedule = Mutex<BackgroundSchedule?>(nil)
    /// Set once `start` returned: then the background threads run and `stop` waits for them.
    let started = Atomic<Bool>(false)
    /// Why the last checkpoint failed, until one succeeds.
    let lastCheckpointError = Mutex<String?>(nil)
    /// What the last checkpoint that wrote something took, for GET_INFO (`dlog-bench index` reads it).
    let lastCheckpoint = Mutex<CheckpointTiming?>(nil)
    /// Set when a checkpoint flushed entries; the first checkpoint after it that finds nothing to do hands the
    /// memory freed meanwhile back to the system (`Memory.returnFreedToSystem`).
    let flushedSinceTrim = Atomic<Bool>(false)
    /// Failed checkpoints in a row (0 while they work), for GET_INFO and the admin socket.
    let checkpointFailures = Atomic<Int>(0)
    public var checkpointFailuresInARow: Int { checkpointFailures.load(ordering: .relaxed) }
    /// Callbacks of connections that stopped reading because the write cache is under pressure.
    let relief = Mutex<[@Sendable () -> Void]>([])
    /// The read-only threshold and low-water mark in force: the configuration's, until a reload changes them.
    let diskThresholds: Mutex<(high: Double, low: Double)>
    /// Why the bookie stopped taking adds because a write found a disk full (ENOSPC), until a checkpoint
    /// succeeds again; the flag mirrors it for the add path.
    let outOfSpace = Mutex<String?>(nil)
    let outOfSpaceFlag = Atomic<Bool>(false)
    /// Entry-log files whose read failure was logged already: one line per damaged file, not per read.
    let loggedDamage = Mutex<Set<String>>([])

    /// Opens storage and replays the journals. Throws on corruption (naming file and offset), bad directories
    /// or I/O errors; the caller reports and exits.
    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        meters = BookieMeters(factory: configuration.metrics ?? MetricsSystem.factory, dimensions: configuration.metricsDimensions)
        diskThresholds = Mutex((configuration.diskUsageThreshold, configuration.diskUsageLowWater))
        storage = try LedgerStorage(configuration: configuration.storage,
                                    journalCount: configuration.journalDirectories.count)
        let report = storage.startReport
        logger.info("ledger index loaded", metadata: ["ledgers": "\(storage.ledgerCount)", "entryLogs": "\(storage.entryLogCount)",
                                                     "generation": "\(report.indexGeneration)",
                                                     "elapsed": "\(report.indexLoadSeconds) seconds"])
        for note in report.manifestNotes {
            logger.warning("ledger index: \(note)")
        }
        for file in report.removed {
            logger.info("removed an entry log proven to be garbage", metadata: ["file": "\(file)"])
        }
        for file in report.quarantined {
            logger.warning("quarantined an entry log the ledger index does not list; it is kept for an operator to inspect or delete",
                           metadata: ["file": "\(file)"])
        }
        var journals: [Journal] = []
        for (i, dir) in configuration.journalDirectories.enumerated() {
            var jc = configuration.journal
            jc.directory = dir
            jc.metrics = configuration.metrics
            jc.metricsDimensions = configuration.metricsDimensions
            journals.append(try Journal(index: i, configuration: jc))
        }
        self.journals = journals
    }

    /// Replays, checkpoints what replay found, and starts journals and background work.
    /// `onFatal` runs when a journal fails; the daemon exits non-zero. `progress` hears how replay goes, as
    /// one line, when it starts and then at most once a second (the daemon logs it and shows it to systemd).
    public func start(progress: (String) -> Void = { _ in }, onFatal: @escaping @Sendable (String) -> Void) throws {
        var resume: [JournalPosition] = []
        var reported: ContinuousClock.Instant?
        for journal in journals {
            let started = ContinuousClock.now
            let mark = storage.journalMark(journal.index)
            var batch: [JournalRecord] = []
            var file = (index: 0, files: 0), records = 0
            func report() {
                let now = ContinuousClock.now
                guard reported.map({ now - $0 >= .seconds(1) }) ?? true else { return }
                reported = now
                progress("replaying journal \(journal.index + 1) of \(journals.count): file \(file.index + 1) of \(file.files), "
                         + "\(records) records so far")
            }
            let summary = try journal.replay(from: mark, truncateCorrupt: configuration.truncateCorruptJournal, onFile: { index, files in
                file = (index, files)
                report()
            }) { kind, payload in
                batch.append(JournalRecord(kind: kind, payload: payload))
                records += 1
                if batch.count >= 4096 {
                    storage.apply(batch, journal: journal.index, through: nil, replaying: true)
                    batch.removeAll(keepingCapacity: true)
                    report()
                }
            }
            storage.apply(batch, journal: journal.index, through: summary.end, replaying: true)
            if let cut = summary.truncatedAt {
                logger.critical("journal truncated at a corrupt batch by operator request", metadata: ["at": "\(cut)"])
            }
            let elapsed = ContinuousClock.now - started
            logger.info("journal replayed", metadata: [
                "journal": "\(journal.configuration.directory)", "records": "\(summary.records)",
                "bytes": "\(summary.bytes)", "elapsed": "\(elapsed)", "from": "\(mark.map { "\($0)" } ?? "start")"])
            resume.append(summary.end)
        }
        // Persist what replay rebuilt, so the next start replays only what comes after. On a full ledger disk
        // the bookie starts read-only instead: replay's entries stay in memory (and in the journal), reads are
        // served, and the background thread retries the checkpoint.
        var marks = journals.map { storage.journalMark($0.index) }
        do {
            marks = try storage.checkpoint().marks
        } catch let error as SystemError where error.errno == ENOSPC {
            lastCheckpointError.withLock { $0 = "\(error)" }
            enterOutOfSpace("the start-up checkpoint failed: \(error)")
        }
        for (i, journal) in journals.enumerated() {
            journal.start(resumeAfter: resume[i], releasedBelow: marks[i]?.fileNumber ?? 0, sink: self,
                          onFatal: onFatal)
        }
        startBackground()
        started.store(true, ordering: .releasing)
    }

    /// Stops the journals (after writing what they hold) and the background threads, then checkpoints. Only
    /// the first call does anything. A bookie whose start failed only stops its journals: what its replay
    /// applied before the failure must not be checkpointed.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for j in journals { j.stop() }
        guard started.load(ordering: .acquiring) else { return }
        if configuration.backgroundThreads {
            backgroundWakeup.signal()
            compactionWakeup.signal()
            background.wait()  // checkpoint thread
            background.wait()  // compaction thread
        }
        _ = try? storage.checkpoint()
    }

    /// Read-only because a disk is nearly full, or because an operator said so (`dlogctl admin readonly on`).
    public var isReadOnly: Bool {
        readOnly.load(ordering: .relaxed) || operatorReadOnly.load(ordering: .relaxed)
            || outOfSpaceFlag.load(ordering: .relaxed) || draining.load(ordering: .relaxed)
    }

    /// Why adds are refused, for the refusal's message.
    var readOnlyReason: String {
        if let full = outOfSpaceReason { return "a disk is full: \(full)" }
        if operatorReadOnly.load(ordering: .relaxed) { return "set by an operator" }
        if draining.load(ordering: .relaxed) { return "being drained (`dlogctl bookie drain`): its copies move to other bookies" }
        return "disk usage over threshold"
    }

    /// Why adds are refused for a full disk, while they are.
    public var outOfSpaceReason: String? { outOfSpace.withLock { $0 } }

    /// A write found a disk full: read-only at once (the periodic usage check may come too late on a small
    /// disk), until a checkpoint succeeds again.
    func enterOutOfSpace(_ why: String) {
        let first = outOfSpace.withLock { reason in
            defer { reason = reason ?? why }
            return reason == nil
        }
        outOfSpaceFlag.store(true, ordering: .relaxed)
        if first {
            logger.warning("entering read-only mode: a write found the disk full (ENOSPC); adds are refused and reads served until a checkpoint succeeds again",
                           metadata: ["error": "\(why)"])
        }
    }

    /// A checkpoint succeeded: space was found, adds may come again.
    func leaveOutOfSpace() {
        guard outOfSpaceFlag.exchange(false, ordering: .relaxed) else { return }
        outOfSpace.withLock { $0 = nil }
        logger.notice("leaving read-only mode: checkpoints write again after the disk was full")
    }

    /// An operator's read-only switch, apart from the disk check (which cannot clear it).
    public func setOperatorReadOnly(_ on: Bool) {
        operatorReadOnly.store(on, ordering: .relaxed)
        logger.notice(on ? "read-only by operator" : "operator read-only cleared")
    }

    /// Read-only while a drain moves this bookie's copies elsewhere, so no new entry lands on it meanwhile.
    public func setDraining(_ on: Bool) {
        guard draining.exchange(on, ordering: .relaxed) != on else { return }
        logger.notice(on ? "draining: read-only while every copy moves to other bookies" : "drain cancelled")
    }

    public var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Changes the disk usage threshold and low-water mark (a reload); the next disk check applies them.
    public func setDiskThresholds(high: Double, low: Double) { diskThresholds.withLock { $0 = (high, low) } }
    public var diskThresholdsInForce: (high: Double, low: Double) { diskThresholds.withLock { $0 } }

    /// Asks the background thread for a checkpoint now.
    public func requestCheckpoint() { askCheckpoint() }

    /// Asks for a checkpoint, waking the background thread if this ask is news (a full cache asks after every
    /// journal batch; only the first wakes it).
    func askCheckpoint() {
        if !checkpointRequested.exchange(true, ordering: .acquiringAndReleasing) { backgroundWakeup.signal() }
    }

    /// True while the write cache holds 1.5× its checkpoint size or more and checkpoints are working:
    /// connections should stop reading (TCP back-pressure) until a checkpoint catches up, so adds wait
    /// instead of failing at 3×. While checkpoints fail, waiting would hang clients without a word, so
    /// reading goes on and adds get TOO_MANY_REQUESTS naming the failure.
    public var underWritePressure: Bool {
        storage.cacheBytes * 2 >= configuration.storage.writeCacheBytes * 3
            && lastCheckpointError.withLock({ $0 }) == nil
    }

    /// Runs `resume` once the pressure is gone (checked by the background thread's next turn, which this wakes).
    public func whenWritePressureEases(_ resume: @escaping @Sendable () -> Void) {
        relief.withLock { $0.append(resume) }
        backgroundWakeup.signal()
    }

    func journal(for ledger: LedgerID) -> Journal { journals[Int(ledger.rawValue % UInt64(journals.count))] }

    // MARK: JournalSink

    public func journalDidSync(_ records: [JournalRecord], journal: Int, through position: JournalPosition) {
        storage.apply(records, journal: journal, through: position)
        if storage.cacheFull { askCheckpoint() }
    }

    public func journalNeedsCheckpoint(journal: Int) { askCheckpoint() }

    public func journalOutOfSpace(journal: Int, error: String) {
        enterOutOfSpace("journal \(journals[journal].configuration.directory) could not add a file: \(error)")
        askCheckpoint()
    }
}
