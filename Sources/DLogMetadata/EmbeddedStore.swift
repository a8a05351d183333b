import DLogIO
import Dispatch
import Foundation
import Synchronization

/// The single-node, durable metadata store that runs inside the metadata role (and in-process where a test
/// or the standalone mode wants it). One thread owns the database; requests reach it through a bounded queue
/// and are group-committed (see `EmbeddedEngine`).
public final class EmbeddedStore: MetadataStore {
    public struct Configuration: Sendable {
        public var directory: String
        /// Revisions of change history kept for watches that resume; older ones answer `compacted`.
        public var historyRevisions: Int64 = 100_000
        public var queueCountMax = 65_536
        public var queueBytesMax = 256 << 20
        /// Requests run in one SQLite transaction at most.
        public var batchMax = 512
        /// Rows of history a resuming watch reads at a time.
        public var watchCatchUpRowsMax = 10_000

        public init(directory: String) { self.directory = directory }
    }

    let configuration: Configuration
    private let queue: BlockingQueue<StoreRequest>
    private let nextWatchID = Atomic<UInt64>(1)
    private let stopped = DispatchSemaphore(value: 0)
    /// Set when the database failed for good; read by `failure`.
    private let fatal = Mutex<String?>(nil)

    /// Opens (creating if needed) the store in `configuration.directory`. `onFatal` runs once, on the store
    /// thread, if SQLite reports an I/O error: from then on every request is refused and the role should exit.
    public init(_ configuration: Configuration, onFatal: @escaping @Sendable (String) -> Void = { _ in }) throws {
        self.configuration = configuration
        queue = BlockingQueue(countMax: configuration.queueCountMax, bytesMax: configuration.queueBytesMax) { $0.weight }
        try FileSystem.makeDirectory(configuration.directory)
        let lock = try Self.lockDirectory(configuration.directory)
        let opened = DispatchSemaphore(value: 0)
        let openError = Mutex<String?>(nil)
        let thread = Thread { [self, configuration] in
            // The engine (and its database connection) is gone before `stopped` is signalled, so a store
            // reopened on the same directory right after `shutdown()` finds the database unlocked.
            openAndRun(configuration, opened: opened, openError: openError, onFatal: onFatal)
            close(lock)
            stopped.signal()
        }
        thread.name = "dlog-metadata"
        thread.start()
        opened.wait()
        if let message = openError.withLock({ $0 }) {
            throw MetadataError.internalError(message)
        }
    }

    /// Two stores on one directory would each count revisions on their own and hand out the same versions:
    /// an exclusive lock on `LOCK` (released by the kernel if the process dies) makes the second refuse.
    private static func lockDirectory(_ directory: String) throws -> Int32 {
        let path = directory + "/LOCK"
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MetadataError.internalError("cannot open \(path): errno \(errno)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let error = errno
            close(fd)
            if error == EWOULDBLOCK {
                throw MetadataError.internalError("\(directory) is in use by another metadata store (\(path) is locked); stop it first or use another data_dir")
            }
            throw MetadataError.internalError("cannot lock \(path): errno \(error)")
        }
        return fd
    }

    private func openAndRun(_ configuration: Configuration, opened: DispatchSemaphore, openError: borrowing Mutex<String?>,
                            onFatal: @Sendable (String) -> Void) {
        let engine: EmbeddedEngine
        do {
            engine = try EmbeddedEngine(directory: configuration.directory,
                                        historyRevisions: configuration.historyRevisions,
                                        catchUpRowsMax: configuration.watchCatchUpRowsMax)
        } catch {
            openError.withLock { $0 = "cannot open the metadata store in \(configuration.directory): \(error)" }
            opened.signal()
            return
        }
        opened.signal()
        run(engine, onFatal: onFatal)
    }

    private func run(_ engine: EmbeddedEngine, onFatal: @Sendable (String) -> Void) {
        var failure: String?
        while true {
            queue.waitForItems(until: engine.nextLeaseDeadline)
            var taken = 0
            let batch = queue.drain { _ in taken += 1; return taken <= configuration.batchMax }
            let now = ContinuousClock.now
            let leaseDue = engine.nextLeaseDeadline.map { $0 <= now } ?? false
            if batch.isEmpty && !leaseDue {
                if queue.isClosed { break }
                continue
            }
            switch engine.process(batch, now: now) {
            case .committed:
                continue
            case .failed:
                // Whatever failed (a full disk) may fail again at once, for instance on a lease that is due:
                // do not spin on it.
                Thread.sleep(forTimeInterval: 0.1)
                continue
            case .fatal(let message):
                failure = message
            }
            break
        }
        queue.close()
        let reason = failure.map { "metadata store failed: \($0)" } ?? "metadata store is shut down"
        for request in queue.drain(while: { _ in true }) { request.refuse(.unavailable(reason)) }
        engine.endWatchers(.unavailable(reason))
        if let failure {
            fatal.withLock { $0 = failure }
            onFatal(failure)
        }
    }

    func submit(_ request: StoreRequest) {
        // An unsubscribe frees the store's work; dropping it for a full queue would leak a watcher.
        let force: Bool
        if case .unsubscribe = request { force = true } else { force = false }
        switch queue.offer([request], ignoringLimits: force) {
        case .accepted:
            break
        case .full:
            request.refuse(.unavailable("metadata store queue is full (\(queue.countMax) requests); retry later"))
        case .closed:
            request.refuse(.unavailable(fatal.withLock { $0 }.map { "metadata store failed: \($0)" }
                                        ?? "metadata store is shut down"))
        }
    }

    // MARK: MetadataStore

    public func range(_ range: KeyRange, limit: Int) async throws -> RangePage {
        try await withCheckedThrowingContinuation { continuation in
            submit(.range(range, limit: limit, reply: { continuation.resume(with: $0) }))
        }
    }

    public func commit(_ transaction: Transaction) async throws -> Revision {
        try MetadataLimits.validate(transaction)
        return try await withCheckedThrowingContinuation { continuation in
            submit(.commit(transaction, reply: { continuation.resume(with: $0) }))
        }
    }

    /// A watch id unique in this store, for every kind of watcher (in-process and the server's).
    public func makeWatchID() -> UInt64 { nextWatchID.add(1, ordering: .relaxed).oldValue }

    public func subscribe(_ range: KeyRange, from revision: Revision) -> AsyncThrowingStream<[WatchEvent], any Error> {
        let id = makeWatchID()
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: [WatchEvent].self,
                                                                    bufferingPolicy: .bufferingOldest(256))
        let sink = WatchSink(id: id, range: range, deliver: { events in
            switch continuation.yield(events) {
            case .enqueued: return true
            case .dropped:
                continuation.finish(throwing: MetadataError.unavailable("watch consumer fell behind"))
                return false
            case .terminated: return false
            @unknown default: return false
            }
        }, end: { continuation.finish(throwing: $0) })
        continuation.onTermination = { [weak self] _ in self?.submit(.unsubscribe(id)) }
        submit(.subscribe(sink, from: revision))
        return stream
    }

    public func grantLease(ttlSeconds: Int) async throws -> Lease {
        try await withCheckedThrowingContinuation { continuation in
            submit(.grant(ttlSeconds: ttlSeconds, reply: { continuation.resume(with: $0) }))
        }
    }

    public func keepAlive(_ lease: LeaseID) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            submit(.keepAlive(lease, reply: { continuation.resume(with: $0) }))
        }
    }

    public func revoke(_ lease: LeaseID) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            submit(.revoke(lease, reply: { continuation.resume(with: $0) }))
        }
    }

    public func stats() async -> EmbeddedStats {
        await withCheckedContinuation { continuation in
            submit(.stats(reply: { continuation.resume(returning: $0) }))
        }
    }

    public func shutdown() async {
        queue.close()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { [stopped] in
                stopped.wait()
                stopped.signal()
                continuation.resume()
            }
        }
    }

    /// The same, for callers outside async code (the daemon's stop path).
    public func shutdownAndWait() {
        queue.close()
        stopped.wait()
        stopped.signal()
    }
}
