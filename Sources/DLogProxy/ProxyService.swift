import CoreMetrics
import DistributedLog
import DLogLedger
import DLogMetadata
import DLogWire
import Foundation
import Logging
import Synchronization

/// What a proxy does, apart from the network: owns streams (logs) on demand through the log's ownership lock,
/// one writer per owned stream (which batches the records of all clients of that stream into entries),
/// redirects requests for streams another proxy owns, enforces rate and stream limits, and drains.
public final class ProxyService: Sendable {
    public struct Settings: Sendable {
        /// This proxy's name among the proxies (its registration key).
        public var id: String
        /// Where clients reach it (host:port), written into the streams it owns.
        public var address: String
        /// Streams owned at once, at most.
        public var streamsMax = 10_000
        /// Streams being opened at once, at most; the others wait their turn in order (see `OpenQueue`).
        public var opensAtOnce = 256
        public var limits = ProxyLimits()
        /// Writing to a stream that does not exist creates it.
        public var createStreams = true
        /// Where the proxy records its service times (`ProxyMeters`); nil: `MetricsSystem`'s factory.
        public var metrics: (any MetricsFactory)? = nil

        public init(id: String, address: String) {
            self.id = id
            self.address = address
        }
    }

    public let namespace: Namespace
    public let settings: Settings
    /// The rate limits in force: `settings.limits` until a reload changes them.
    public var limits: ProxyLimits { state.withLock { $0.currentLimits } }
    let logger: Logger

    private enum Slot {
        case opening(Task<LogWriter, any Error>)
        case owned(LogWriter)
    }

    private struct State {
        var streams: [String: Slot] = [:]
        var limits: [String: RateCheck] = [:]
        var proxyLimit: RateCheck
        var draining = false
        /// Repeated warnings (a soft limit, a stream failing to open while clients retry): one line per text every
        /// 10 s.
        var warnings = LogThrottle(interval: .seconds(10), keysMax: 10_000)
        /// For metrics: requests by operation, failures by status, records written. Keyed by the values, named
        /// only when read (`counters`): naming each request's operation as it came (`"\(op)"`, through reflection)
        /// took 2% of a standalone's CPU at 100 streams x 100 writers.
        var requests: [ProxyOp: UInt64] = [:]
        var failures: [ProxyStatus: UInt64] = [:]
        var recordsWritten: UInt64 = 0
        var currentLimits: ProxyLimits
    }

    private let state: Mutex<State>
    private let registration = Mutex<OwnershipLock?>(nil)
    /// Distinguishes this process from an earlier one with the same id and address (a restart), so a lock
    /// left by the earlier one is never mistaken for this one's.
    private let incarnation = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    private let opens: OpenQueue
    /// Service times by operation, for metrics.
    public let meters: ProxyMeters

    public init(namespace: Namespace, settings: Settings, logger: Logger) {
        self.namespace = namespace
        self.settings = settings
        self.logger = logger
        opens = OpenQueue(limit: max(1, settings.opensAtOnce))
        meters = ProxyMeters(factory: settings.metrics ?? MetricsSystem.factory)
        let l = settings.limits
        state = Mutex(State(proxyLimit: Self.proxyCheck(settings.id, l), currentLimits: l))
    }

    static func proxyCheck(_ id: String, _ l: ProxyLimits) -> RateCheck {
        RateCheck(scope: "proxy \(id)", records: (l.proxyRecordsSoft, l.proxyRecordsHard),
                  bytes: (l.proxyBytesSoft, l.proxyBytesHard), now: .now)
    }

    /// Puts new rate limits in force (a reload); every stream's budget starts again full.
    public func setLimits(_ limits: ProxyLimits) {
        state.withLock { s in
            s.currentLimits = limits
            s.proxyLimit = Self.proxyCheck(settings.id, limits)
            s.limits.removeAll()
        }
    }

    /// The value of a log's ownership lock when this proxy owns it: clients are redirected to the address in it.
    var ownerValue: String { ProxyOwner.value(id: "\(settings.id)#\(incarnation)", address: settings.address) }

    /// Registers this proxy under `/proxies/ID` (bound to its lease), so clients can find it, and keeps it
    /// registered: a registration lost in a metadata outage is taken again.
    public func register() async throws {
        try await takeRegistration()
        Task { [weak self] in
            while let self, !self.state.withLock({ $0.draining }) {
                try? await Task.sleep(for: .seconds(1))
                guard self.registration.withLock({ $0?.lostReason }) != nil, !self.state.withLock({ $0.draining }) else { continue }
                self.logger.warning("proxy registration lost; registering again")
                try? await self.takeRegistration()
            }
        }
    }

    private func takeRegistration() async throws {
        let lock = try await OwnershipLock.acquire(ProxyOwner.registrationKey(settings.id), owner: settings.address,
                                                   store: namespace.pool.cluster.store,
                                                   leaseSeconds: namespace.options.ownershipLeaseSeconds,
                                                   wait: .seconds(namespace.options.ownershipLeaseSeconds + 2), log: "proxy \(settings.id)")
        registration.withLock { $0 = lock }
    }

    /// The streams this proxy owns now.
    public var ownedStreams: [String] {
        state.withLock { s in s.streams.compactMap { name, slot in if case .owned = slot { name } else { nil } }.sorted() }
    }

    // MARK: Requests

    public func handle(_ request: ProxyRequest) async -> Result<ProxyReply, ProxyFailure> {
        let result = await answer(request)
        count(request, result)
        return result
    }

    /// A request and where its answer goes.
    public typealias Pending = (request: ProxyRequest, completion: @Sendable (Result<ProxyReply, ProxyFailure>) -> Void)

    /// Answers `request` through `completion`. A write to a stream this proxy owns (nearly every request) is
    /// handed to its writer at once and answered from the thread that confirms it: no task, no hop between
    /// threads. Anything else (an open, a redirect, a failed writer, the other operations) runs as a task.
    public func handle(_ request: ProxyRequest, completion: @escaping @Sendable (Result<ProxyReply, ProxyFailure>) -> Void) {
        handle([(request, completion)])
    }

    /// Answers each of `requests` as `handle(_:completion:)` does, with the writes to each owned stream handed
    /// to its writer in one step (`LogWriter.writeBulk(calls:)`): the writes one read of a connection brought
    /// then go out in one entry while a slot is free, rather than the first alone and the rest behind it.
    public func handle(_ requests: [Pending]) {
        var writers: [LogWriter] = []
        var calls: [ObjectIdentifier: [LogWriter.Call]] = [:]
        for (request, completion) in requests {
            guard let (writer, call) = ownedWrite(request, completion) else { continue }
            let key = ObjectIdentifier(writer)
            if calls[key] == nil { writers.append(writer) }
            calls[key, default: []].append(call)
        }
        for writer in writers { writer.writeBulk(calls: calls[ObjectIdentifier(writer)]!) }
    }

    /// A write to a stream this proxy owns, admitted, as a call of its writer; nil when the request was answered
    /// (refused by a rate limit) or sent the slow way.
    private func ownedWrite(_ request: ProxyRequest,
                            _ completion: @escaping @Sendable (Result<ProxyReply, ProxyFailure>) -> Void)
        -> (LogWriter, LogWriter.Call)? {
        let records: [ProxyRecord]
        switch request {
        case .write(_, let record): records = [record]
        case .writeBulk(_, let bulk): records = bulk
        default:
            slowly(request, completion)
            return nil
        }
        let stream = request.stream
        let owned = state.withLock { s -> LogWriter? in if case .owned(let writer)? = s.streams[stream] { writer } else { nil } }
        guard let writer = owned, writer.failure == nil,
              !records.contains(where: { $0.payload.count > LogRecord.payloadBytesMax }) else {
            slowly(request, completion)
            return nil
        }
        do {
            try admit(stream, records: records.count, bytes: records.reduce(0) { $0 + $1.payload.count })
        } catch {
            let result = Result<ProxyReply, ProxyFailure>.failure(error)
            count(request, result)
            completion(result)
            return nil
        }
        return (writer, (records.map { ($0.txid, $0.payload) }, { outcome in
            let result: Result<ProxyReply, ProxyFailure>
            switch outcome {
            case .success(let dlsns): result = .success(request.op == .write ? .written(dlsns[0]) : .writtenBulk(dlsns))
            case .failure(let error):
                if let failure = writer.failure { self.letGo(stream, writer, failure) }
                result = .failure(self.failure(for: error, stream: stream))
            }
            self.count(request, result)
            completion(result)
        }))
    }

    private func slowly(_ request: ProxyRequest, _ completion: @escaping @Sendable (Result<ProxyReply, ProxyFailure>) -> Void) {
        Task { completion(await handle(request)) }
    }

    private func count(_ request: ProxyRequest, _ result: Result<ProxyReply, ProxyFailure>) {
        state.withLock { s in
            s.requests[request.op, default: 0] += 1
            switch result {
            case .failure(let failure): s.failures[failure.status, default: 0] += 1
            case .success(.written): s.recordsWritten += 1
            case .success(.writtenBulk(let dlsns)): s.recordsWritten += UInt64(dlsns.count)
            case .success: break
            }
        }
    }

    /// Counters for metrics: requests by operation, failures by status, records written, streams owned.
    public var counters: (requests: [String: UInt64], failures: [String: UInt64], recordsWritten: UInt64, streamsOwned: Int) {
        let (requests, failures, written, owned) = state.withLock { s in
            (s.requests, s.failures, s.recordsWritten, s.streams.count)
        }
        func named<Key>(_ counts: [Key: UInt64]) -> [String: UInt64] {
            Dictionary(uniqueKeysWithValues: counts.map { ("\($0.key)", $0.value) })
        }
        return (named(requests), named(failures), written, owned)
    }

    private func answer(_ request: ProxyRequest) async -> Result<ProxyReply, ProxyFailure> {
        let stream = request.stream
        if let problem = LogName.problem(stream) { return .failure(ProxyFailure(.badRequest, "invalid stream name '\(stream)': \(problem)")) }
        do {
            switch request {
            case .write(_, let record):
                let dlsns = try await write(stream, [record])
                return .success(.written(dlsns[0]))
            case .writeBulk(_, let records):
                return .success(.writtenBulk(try await write(stream, records)))
            case .truncate(_, let dlsn):
                try await writer(for: stream, create: false).truncate(before: dlsn)
                return .success(.done)
            case .create:
                try await namespace.createLog(stream)
                return .success(.done)
            case .delete:
                try await redirectUnlessOwnedHereOrFree(stream)
                await release(stream)
                try await namespace.deleteLog(stream)
                return .success(.done)
            case .getOwner:
                return .success(.owner(try await owner(of: stream)))
            case .release:
                try await redirectUnlessOwnedHereOrFree(stream)
                await release(stream)
                return .success(.done)
            case .heartbeat:
                _ = try await writer(for: stream, create: false)
                return .success(.owner(settings.address))
            }
        } catch {
            return .failure(failure(for: error, stream: stream))
        }
    }

    /// What the client is told of `error`.
    private func failure(for error: any Error, stream: String) -> ProxyFailure {
        switch error {
        case let failure as ProxyFailure: return failure
        case let error as LogError: return failure(for: error, stream: stream)
        case let error as MetadataError: return Self.failure(for: error, stream: stream)
        default: return ProxyFailure(.internalError, "\(stream): \(error)")
        }
    }

    private func write(_ stream: String, _ records: [ProxyRecord]) async throws -> [DLSN] {
        let bytes = records.reduce(0) { $0 + $1.payload.count }
        if let large = records.first(where: { $0.payload.count > LogRecord.payloadBytesMax }) {
            throw ProxyFailure(.tooLarge, "stream '\(stream)': a record of \(large.payload.count) bytes is over the limit of \(LogRecord.payloadBytesMax)")
        }
        let writer = try await writer(for: stream, create: settings.createStreams)
        try admit(stream, records: records.count, bytes: bytes)
        do {
            return try await writer.writeBulk(assigning: records.map { ($0.txid, $0.payload) })
        } catch {
            // A writer that failed for good (lost the stream, bookies failed, ...) is let go, so the next
            // request reopens the stream (recovering its segment) here or on another proxy.
            if let failure = writer.failure { letGo(stream, writer, failure) }
            throw error
        }
    }

    /// Charges the stream's and the proxy's rate limits; a hard limit refuses, a soft one is logged (at most
    /// every 10 s per scope).
    private func admit(_ stream: String, records: Int, bytes: Int) throws(ProxyFailure) {
        let now = ContinuousClock.now
        let (streamOutcome, proxyOutcome) = state.withLock { s -> (RateCheck.Outcome, RateCheck.Outcome) in
            let l = s.currentLimits
            var check = s.limits[stream] ?? RateCheck(scope: "stream '\(stream)'", records: (l.streamRecordsSoft, l.streamRecordsHard),
                                                      bytes: (l.streamBytesSoft, l.streamBytesHard), now: now)
            let streamOutcome = check.check(records: records, bytes: bytes, now: now)
            s.limits[stream] = check
            return (streamOutcome, s.proxyLimit.check(records: records, bytes: bytes, now: now))
        }
        for outcome in [streamOutcome, proxyOutcome] {
            switch outcome {
            case .allowed: break
            case .hard(let why): throw ProxyFailure(.overCapacity, why + "; slow down")
            case .soft(let why):
                if shouldLog(why) { logger.warning("\(why)", metadata: ["stream": "\(stream)"]) }
            }
        }
    }

    /// True at most once every 10 s for the same text: repeated warnings are logged, not flooded.
    private func shouldLog(_ text: String) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { $0.warnings.admit(text, now: now) != nil }
    }

    /// Log fields for a stream's failure: the stream, the error, and the ledger it names as `ledger` (the
    /// journal's LOG_NAME and LEDGER_ID).
    static func fields(_ stream: String, _ error: any Error) -> Logger.Metadata {
        var fields: Logger.Metadata = ["stream": "\(stream)", "error": "\(error)"]
        switch error {
        case LogError.ledger(_, let failure): fields["ledger"] = failure.ledger.map { "\($0)" }
        case let failure as LedgerError: fields["ledger"] = failure.ledger.map { "\($0)" }
        default: break
        }
        return fields
    }

    /// The writer of `stream`, owning it first when no proxy does; a redirect when another proxy does.
    private func writer(for stream: String, create: Bool) async throws -> LogWriter {
        enum Next { case ready(LogWriter), wait(Task<LogWriter, any Error>), open }
        let next = state.withLock { s -> Next in
            switch s.streams[stream] {
            case .owned(let writer): return .ready(writer)
            case .opening(let task): return .wait(task)
            case nil: return .open
            }
        }
        switch next {
        case .ready(let writer):
            guard let failure = writer.failure else { return writer }
            letGo(stream, writer, failure)
            throw ProxyFailure(.unavailable, "stream '\(stream)': its writer here failed (\(writer.failure!)); retry")
        case .wait(let task): return try await task.value
        case .open: break
        }
        if let holder = try await lockHolder(stream) {
            // Held by this proxy but not in its table: a writer here is still letting go. Soon free.
            guard holder != ownerValue else {
                throw ProxyFailure(.unavailable, "stream '\(stream)' is being released by this proxy; retry")
            }
            throw redirectOrUnavailable(stream, holder: holder)
        }
        enum Claim { case refused(ProxyFailure), existing(Slot), claimed(Task<LogWriter, any Error>) }
        let claim = state.withLock { s -> Claim in
            if s.draining { return .refused(ProxyFailure(.unavailable, "proxy \(settings.id) is draining; retry (another proxy takes the stream)")) }
            // Another request got here first (while this one read the lock): use its writer.
            if let slot = s.streams[stream] { return .existing(slot) }
            if s.streams.count >= settings.streamsMax {
                return .refused(ProxyFailure(.overCapacity, "proxy \(settings.id) owns its limit of \(settings.streamsMax) streams"))
            }
            // Started only once claimed: opening takes the log's lock, which nothing else here must race for.
            let task = Task { () throws -> LogWriter in
                try await self.opens.run { try await self.namespace.openWriter(stream, create: create, owner: self.ownerValue) }
            }
            s.streams[stream] = .opening(task)
            return .claimed(task)
        }
        let task: Task<LogWriter, any Error>
        switch claim {
        case .refused(let failure): throw failure
        case .existing(.owned(let writer)): return writer
        case .existing(.opening(let other)): return try await other.value
        case .claimed(let claimed): task = claimed
        }
        do {
            let writer = try await task.value
            // Installed only if nothing let the slot go meanwhile (a release, a drain): else let the stream go.
            let installed = state.withLock { s -> Bool in
                guard !s.draining, case .opening(let current)? = s.streams[stream], current == task else { return false }
                s.streams[stream] = .owned(writer)
                return true
            }
            guard installed else {
                try? await writer.close()
                throw ProxyFailure(.unavailable, "stream '\(stream)' was released while it was being opened; retry")
            }
            logger.info("owning stream", metadata: ["stream": "\(stream)"])
            return writer
        } catch let failure as ProxyFailure {
            throw failure
        } catch {
            state.withLock { s in
                if case .opening? = s.streams[stream] { s.streams[stream] = nil }
            }
            if case LogError.ownedByOther(_, let holder) = error { throw redirectOrUnavailable(stream, holder: holder) }
            // A failed open (its segment's recovery, or metadata): once per stream and error every 10 s, however
            // often clients retry.
            if shouldLog("open \(stream): \(error)") {
                logger.warning("opening stream failed (recovering its last segment, or reaching metadata)",
                               metadata: Self.fields(stream, error))
            }
            throw error
        }
    }

    private func lockHolder(_ stream: String) async throws -> String? {
        try await namespace.pool.cluster.store.get(LogKeys.lock(stream)).map { String(decoding: $0.value, as: UTF8.self) }
    }

    private func redirectOrUnavailable(_ stream: String, holder: String) -> ProxyFailure {
        if let address = ProxyOwner.address(fromLockValue: holder) {
            return ProxyFailure(.redirect, address)
        }
        return ProxyFailure(.unavailable, "stream '\(stream)' is held by writer \(holder), not a proxy; retry once it lets go")
    }

    /// Requests that act on a stream's owner go to the proxy that owns it.
    private func redirectUnlessOwnedHereOrFree(_ stream: String) async throws {
        if state.withLock({ $0.streams[stream] != nil }) { return }
        if let holder = try await lockHolder(stream), holder != ownerValue { throw redirectOrUnavailable(stream, holder: holder) }
    }

    /// The owning proxy's address: this one, another (from the lock), or nil.
    private func owner(of stream: String) async throws -> String? {
        if let writer = state.withLock({ s -> LogWriter? in if case .owned(let w)? = s.streams[stream] { w } else { nil } }),
           writer.failure == nil {
            return settings.address
        }
        return try await lockHolder(stream).flatMap { ProxyOwner.address(fromLockValue: $0) }
    }

    /// Stops owning `stream`: its writer flushes, completes its segment and lets the lock go (or, with
    /// `lockGoesWithSession`, leaves it to the namespace's shared lease, which a drain revokes once at its end).
    public func release(_ stream: String, lockGoesWithSession: Bool = false) async {
        let slot = state.withLock { s -> Slot? in
            defer { s.streams[stream] = nil; s.limits[stream] = nil }
            return s.streams[stream]
        }
        var writer: LogWriter?
        switch slot {
        case .owned(let owned)?: writer = owned
        // Its opener sees the slot gone and closes what it opened; waiting here makes release return after.
        case .opening(let task)?: _ = try? await task.value
        case nil: break
        }
        if let writer {
            do {
                try await writer.close(releasingLock: !lockGoesWithSession)
            } catch {
                logger.warning("releasing stream: \(error)", metadata: ["stream": "\(stream)"])
            }
        }
    }

    /// Says why a stream's writer failed, and forgets it (see `forget`).
    private func letGo(_ stream: String, _ writer: LogWriter, _ failure: LogError) {
        // Every request that meets the failure lands here: the one that lets the writer go says so.
        guard forget(stream, writer) else { return }
        if case .ownershipLost = failure {
            logger.warning("lost ownership of stream; letting it go", metadata: Self.fields(stream, failure))
        } else {
            logger.warning("stream's writer failed; letting the stream go (the next request opens and recovers it)",
                           metadata: Self.fields(stream, failure))
        }
    }

    /// Forgets a writer that lost its stream (it failed; nothing to flush). True when this call removed it
    /// from the table; that call also closes it, which lets its lock go at once instead of at lease expiry.
    @discardableResult
    private func forget(_ stream: String, _ writer: LogWriter) -> Bool {
        let removed = state.withLock { s -> Bool in
            guard case .owned(let current)? = s.streams[stream], current === writer else { return false }
            s.streams[stream] = nil
            return true
        }
        if removed { Task { try? await writer.close() } }
        return removed
    }

    /// Drains: takes no new streams, flushes and releases every owned one, and leaves the proxies' registry.
    public func drain() async {
        let streams = state.withLock { s -> [String] in
            s.draining = true
            // In name order: the segment records written together then lie side by side in the metadata
            // store's pages, so a group commit writes a few pages, not one per stream.
            return s.streams.keys.sorted()
        }
        logger.info("draining", metadata: ["streams": "\(streams.count)"])
        // Many at once (each release is one metadata commit, which the store groups with others), so 100,000
        // streams do not outlast the stop timeout. Their locks stay until the shared lease is revoked below:
        // one step for all of them, not a delete each.
        await withTaskGroup(of: Void.self) { group in
            for (index, stream) in streams.enumerated() {
                if index >= 1024 { await group.next() }
                group.addTask { await self.release(stream, lockGoesWithSession: true) }
            }
        }
        // Every lock of the drained streams (and of one opening meanwhile) goes with the shared lease.
        await namespace.close()
        if let lock = registration.withLock({ $0 }) { await lock.release() }
    }

    /// The metadata store's trouble as the client should see it: an outage, a lost race or a lost lease is
    /// `UNAVAILABLE`, which clients retry (the cluster recovers by itself); only a fault of the store is
    /// `INTERNAL_ERROR`.
    static func failure(for error: MetadataError, stream: String) -> ProxyFailure {
        switch error {
        case .unavailable:
            return ProxyFailure(.unavailable, "stream '\(stream)': metadata store unavailable (\(error)); retry")
        case .versionConflict, .keyExists, .noSuchKey, .leaseExpired, .compacted:
            return ProxyFailure(.unavailable, "stream '\(stream)': metadata changed meanwhile (\(error)); retry")
        case .tooLarge:
            return ProxyFailure(.tooLarge, "stream '\(stream)': \(error)")
        case .invalidArgument:
            return ProxyFailure(.badRequest, "stream '\(stream)': \(error)")
        case .internalError:
            return ProxyFailure(.internalError, "stream '\(stream)': metadata store failed: \(error)")
        case .permissionDenied:
            return ProxyFailure(.internalError, "stream '\(stream)': the metadata role refused this proxy: \(error)")
        }
    }

    private func failure(for error: LogError, stream: String) -> ProxyFailure {
        switch error {
        case .noSuchLog: return ProxyFailure(.noSuchLog, "\(error)")
        case .logExists: return ProxyFailure(.logExists, "\(error)")
        case .invalidName: return ProxyFailure(.badRequest, "\(error)")
        case .ownedByOther(_, let holder): return redirectOrUnavailable(stream, holder: holder)
        case .txidOutOfOrder: return ProxyFailure(.txidOutOfOrder, "\(error)")
        case .recordTooLarge: return ProxyFailure(.tooLarge, "\(error)")
        case .endOfStream: return ProxyFailure(.endOfStream, "\(error)")
        case .busy: return ProxyFailure(.overCapacity, "\(error)")
        case .ownershipLost, .writerClosed, .ledger, .truncated, .damaged: return ProxyFailure(.unavailable, "\(error)")
        }
    }
}

/// How a proxy names itself in metadata.
public enum ProxyOwner {
    public static let registrations = "/proxies/"
    public static func registrationKey(_ id: String) -> String { registrations + id }

    /// The ownership-lock value of a stream owned by proxy `id` at `address`.
    public static func value(id: String, address: String) -> String { "proxy \(id) at \(address)" }

    /// The address in a lock value written by a proxy, or nil (another kind of writer holds it).
    public static func address(fromLockValue value: String) -> String? {
        guard value.hasPrefix("proxy "), let at = value.range(of: " at ") else { return nil }
        return String(value[at.upperBound...])
    }
}
