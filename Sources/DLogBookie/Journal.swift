import CoreMetrics
import DLogIO
import DLogWire
import Foundation
import Synchronization

/// Receives records once they are durable. Called on the journal's thread, in journal order, before the
/// records' completions run, so state a reader sees is never behind an acknowledgement.
public protocol JournalSink: AnyObject, Sendable {
    func journalDidSync(_ records: [JournalRecord], journal: Int, through position: JournalPosition)
    /// The journal has no free file to roll into: checkpoint so older files can be recycled.
    func journalNeedsCheckpoint(journal: Int)
    /// The journal could not add a file (ENOSPC): it goes on with the files it has, recycling them as
    /// checkpoints release them; the bookie should stop taking adds for now.
    func journalOutOfSpace(journal: Int, error: String)
}

extension JournalSink {
    public func journalOutOfSpace(journal: Int, error: String) {}
}

public enum JournalError: Error, Equatable, CustomStringConvertible {
    case queueFull
    case failed(String)
    case stopped

    public var description: String {
        switch self {
        case .queueFull: return "journal queue is full"
        case .failed(let why): return "journal failed and accepts no more writes: \(why)"
        case .stopped: return "journal is stopped"
        }
    }
}

/// One journal directory with its writer thread. Adds enter through a bounded queue and complete after the
/// batch holding them is durable.
public final class Journal: Sendable {
    /// Sync latency and batch sizes, for metrics.
    let meters: JournalMeters
    public struct Configuration: Sendable {
        public var directory: String
        public var fileBytes: Int
        public var filesMax: Int
        public var policy: GroupCommitPolicy.Configuration
        public var queueCountMax: Int
        public var queueBytesMax: Int
        public var engine: EngineChoice
        public var syncMode: SyncMode
        public var recordBytesMax: Int
        /// How long the writer polls for the next add right after a completion before it sleeps.
        public var spinMax: Duration = .microseconds(50)
        /// Test seam: builds the engine on the journal's thread instead of `engine`/`syncMode` (for
        /// injecting I/O failures without a broken disk).
        public var makeEngine: (@Sendable () throws -> any WriteSyncEngine)? = nil
        /// Where the journal's files live. A simulated disk needs the blocking engine with `.fdatasync`: the
        /// others write through a descriptor.
        public var disk: any Disk = PosixDisk()
        /// Whether the writer runs on a thread of the journal's own. Without one, whoever owns the journal
        /// drives it with `step(now:)` (the simulator does: the whole bookie then runs on one thread, in
        /// simulated time); `stop()` steps it to its end.
        public var writerThread = true
        /// Where the journal records its distributions (`JournalMeters`); nil: `MetricsSystem`'s factory.
        public var metrics: (any MetricsFactory)? = nil
        /// Put on every series of this journal's (a standalone's bookies are told apart by them).
        public var metricsDimensions: [(String, String)] = []

        public init(directory: String, fileBytes: Int = 64 << 20, filesMax: Int = 8,
                    policy: GroupCommitPolicy.Configuration = .init(), queueCountMax: Int = 100_000,
                    queueBytesMax: Int = 256 << 20, engine: EngineChoice = .blocking, syncMode: SyncMode = .fdatasync,
                    recordBytesMax: Int = 8 << 20) {
            self.directory = directory
            self.fileBytes = fileBytes
            self.filesMax = filesMax
            self.policy = policy
            self.queueCountMax = queueCountMax
            self.queueBytesMax = queueBytesMax
            self.engine = engine
            self.syncMode = syncMode
            self.recordBytesMax = recordBytesMax
        }
    }

    struct Pending: Sendable {
        var record: JournalRecord
        var completion: JournalCompletion?
        /// When it was queued (the monotonic clock, nanoseconds): the batch that takes it records its wait.
        var queued = JournalMeters.now
    }

    struct Shared {
        var stats = JournalStats()
        /// Files numbered below this hold nothing a checkpoint still needs.
        var releasedBelow: UInt64 = 0
        var failure: String? = nil
        var stopping = false
        var started = false
        var exited = false
        /// The writer has no free file and waits for a checkpoint to release one.
        var waitingForFile = false
    }

    public let index: Int
    public let configuration: Configuration
    let directory: JournalDirectory
    let queue: BlockingQueue<Pending>
    let shared = Mutex(Shared())
    private let exitSignal = DispatchSemaphore(value: 0)
    /// The writer, when its driver steps it (`writerThread` off), with what to call if it fails.
    private let driven = Mutex<(writer: JournalWriter, onFatal: @Sendable (String) -> Void)?>(nil)
    /// Signalled when a checkpoint releases files (and at stop): what a writer short of files waits on.
    private let released = NSCondition()

    public init(index: Int, configuration: Configuration) throws(SystemError) {
        precondition(configuration.recordBytesMax > 0)
        self.index = index
        self.configuration = configuration
        meters = JournalMeters(factory: configuration.metrics ?? MetricsSystem.factory, journal: index,
                               dimensions: configuration.metricsDimensions)
        directory = JournalDirectory(path: configuration.directory, fileBytes: configuration.fileBytes,
                                     filesMax: configuration.filesMax, disk: configuration.disk)
        queue = BlockingQueue(countMax: configuration.queueCountMax, bytesMax: configuration.queueBytesMax) {
            $0.record.encodedBytes
        }
        try configuration.disk.makeDirectory(configuration.directory)
        // Every file is pre-written here, once in the bookie's life, so that rolling never stalls adds
        // while a file is filled, and the journal's disk space is taken up front.
        let existing = Set(try directory.slots().map(\.slot))
        for slot in 0..<configuration.filesMax where !existing.contains(slot) { try directory.create(slot: slot) }
    }

    /// Replays records after `mark`; see JournalFormat for how the end is found. `onFile` hears as each file
    /// (the Nth of how many) starts.
    public func replay(from mark: JournalPosition?, truncateCorrupt: Bool,
                       onFile: (_ index: Int, _ files: Int) -> Void = { _, _ in },
                       apply: (JournalRecordKind, [UInt8]) -> Void) throws -> ReplaySummary {
        try directory.replay(from: mark, truncateCorrupt: truncateCorrupt, onFile: onFile) { apply($0.kind, $0.payload) }
    }

    /// Starts the writer thread. Writing resumes in a new file after `resumeAfter` (replay's end).
    /// `onFatal` runs once if a write or sync fails; the journal then refuses everything.
    public func start(resumeAfter: JournalPosition, releasedBelow: UInt64, sink: any JournalSink,
                      onFatal: @escaping @Sendable (String) -> Void) {
        shared.withLock {
            $0.releasedBelow = releasedBelow
            $0.started = true
        }
        guard configuration.writerThread else {
            let failed: String? = driven.withLock { driven in
                let writer = JournalWriter(journal: self, sink: sink, resumeAfter: resumeAfter)
                do {
                    try writer.setUp()
                } catch {
                    return writer.fail("\(error)")
                }
                driven = (writer, onFatal)
                return nil
            }
            if let failed {
                shared.withLock { $0.exited = true }
                return onFatal(failed)
            }
            // The first file is opened now, as the thread's start would.
            while step(now: .now) == .busy {}
            return
        }
        // Returns once the writer has its first file open: the disk changes of starting are over when the
        // bookie starts taking adds (a simulated power cut right after a start cuts the same changes every time).
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            let writer = JournalWriter(journal: self, sink: sink, resumeAfter: resumeAfter)
            if let failure = writer.run(ready: { ready.signal() }) { onFatal(failure) }
            shared.withLock { $0.exited = true }
            exitSignal.signal()
        }
        thread.name = "journal-\(index)"
        thread.stackSize = 1 << 20
        thread.start()
        ready.wait()
    }

    /// Queues records, all or none, in order. Returns nil when accepted; the completion then runs once, after
    /// the last record is durable or the journal failed.
    public func append(_ records: [JournalRecord],
                       completion: (@Sendable (Result<Void, JournalError>) -> Void)?) -> JournalError? {
        append(records, then: completion.map { .call($0) })
    }

    func append(_ records: [JournalRecord], then completion: JournalCompletion?) -> JournalError? {
        precondition(!records.isEmpty)
        for r in records {
            precondition(r.payload.count <= configuration.recordBytesMax, "record larger than the journal allows")
        }
        var pending = records.map { Pending(record: $0, completion: nil) }
        pending[pending.count - 1].completion = completion
        return refusal(queue.offer(pending))
    }

    /// Queues records, each with its own completion (nil for none), all or none, in order.
    func append(_ pending: [Pending]) -> JournalError? {
        precondition(!pending.isEmpty)
        for i in pending.indices {  // read in place: binding each (`for p in`) copied it
            precondition(pending[i].record.payload.count <= configuration.recordBytesMax,
                         "record larger than the journal allows")
        }
        return refusal(queue.offer(pending))
    }

    public func append(_ record: JournalRecord,
                       completion: (@Sendable (Result<Void, JournalError>) -> Void)?) -> JournalError? {
        append(record, then: completion.map { .call($0) })
    }

    /// `append` of one record, without the arrays: most adds are one record.
    func append(_ record: JournalRecord, then completion: JournalCompletion?) -> JournalError? {
        precondition(record.payload.count <= configuration.recordBytesMax, "record larger than the journal allows")
        return refusal(queue.offer(Pending(record: record, completion: completion)))
    }

    /// A failed journal closes its queue (and completes what it holds with the failure), so an offer refused as
    /// closed names the failure, or the stop.
    private func refusal(_ offer: BlockingQueue<Pending>.Offer) -> JournalError? {
        switch offer {
        case .accepted:
            return nil
        case .full:
            shared.withLock { $0.stats.rejectedQueueFull += 1 }
            return .queueFull
        case .closed:
            return shared.withLock { $0.failure.map { .failed($0) } } ?? .stopped
        }
    }

    /// A checkpoint persisted everything before `mark`: older files may be recycled. Wakes a writer that waits
    /// for a free file.
    public func release(through mark: JournalPosition) {
        released.lock()
        defer { released.unlock() }
        shared.withLock { $0.releasedBelow = max($0.releasedBelow, mark.fileNumber) }
        released.broadcast()
    }

    /// Blocks the writer until a release moves `releasedBelow` past `seen`, the journal stops, or `timeout`
    /// passes (then it asks for a checkpoint again). `releasedBelow` is changed under `released`'s lock, so a
    /// release between the writer's look and its wait still wakes it.
    func waitForRelease(after seen: UInt64, timeout: TimeInterval) {
        released.lock()
        defer { released.unlock() }
        let (now, stopping) = shared.withLock { ($0.releasedBelow, $0.stopping) }
        guard now == seen && !stopping else { return }
        _ = released.wait(until: Date(timeIntervalSinceNow: timeout))
    }

    public var stats: JournalStats {
        var s = shared.withLock { $0.stats }
        s.queueDepth = queue.count
        return s
    }

    public var failure: String? { shared.withLock { $0.failure } }

    /// True while the writer waits for a checkpoint to free a file (it asked its sink for one).
    public var isWaitingForFile: Bool { shared.withLock { $0.waitingForFile } }

    /// One step of a writer without a thread of its own (see `Configuration.writerThread`), at `now` (what
    /// the group-commit policy times batches by). Completions and the sink are called on the caller's thread,
    /// and must not step the journal themselves.
    public func step(now: ContinuousClock.Instant) -> JournalStep {
        driven.withLock { driven in
            guard let (writer, onFatal) = driven else {
                precondition(!configuration.writerThread, "only a journal without a writer thread is stepped")
                return .ended  // not started, or ended
            }
            let step = writer.step(now: now)
            if step == .ended {
                shared.withLock { $0.exited = true }
                if let failure = writer.failure { onFatal(failure) }
                driven = nil
            }
            return step
        }
    }

    /// Writes out what is queued, then stops the thread and waits for it.
    public func stop() {
        let running = shared.withLock { s -> Bool in
            s.stopping = true
            return s.started && !s.exited
        }
        guard running else { return }
        guard configuration.writerThread else {
            queue.close()
            while driven.withLock({ $0 != nil }) { _ = step(now: .now) }
            return
        }
        released.lock()
        released.broadcast()
        released.unlock()
        queue.close()
        exitSignal.wait()
        exitSignal.signal()  // let a second stop() return too
    }
}
