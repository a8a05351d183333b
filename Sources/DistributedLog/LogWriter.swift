import DLogLedger
import DLogMetadata
import DLogWire
import Foundation
import Synchronization

/// The single writer of a log. Records are written in order and each `write` returns the record's DLSN once
/// the entry holding it is confirmed by the segment's ledger (durable on an ack quorum, every earlier entry
/// confirmed). Records gather into entries: one goes out at once while fewer than `entriesInFlightMax` are in
/// flight, otherwise they wait for the next entry. The writer rolls to a new segment by size or age; a failure
/// of the segment's ledger fails this and every later write (the log itself is left consistent: the next
/// writer recovers the segment).
///
/// Every decision is `LogWriterCore`'s; this class is its driver. It feeds the core one event at a time under
/// a lock, hands entries to the ledger under that same lock (so they keep the records' order), and runs every
/// other action after it: acknowledgements, failures, and the metadata steps of a segment's start and end,
/// whose results come back as events.
public final class LogWriter: Sendable {
    public let name: String
    let namespace: Namespace
    let lock: OwnershipLock
    /// Called once with the record's DLSN or the write's failure.
    typealias Waiter = @Sendable (Result<DLSN, any Error>) -> Void
    /// Called once a flush or close is done: nil, or the writer's failure.
    typealias Signal = @Sendable (LogError?) -> Void
    typealias Core = LogWriterCore<LedgerWriter, Waiter, Signal>

    private let core: Mutex<Core>

    private init(name: String, namespace: Namespace, lock: OwnershipLock, info: LogInfo, infoVersion: Version,
                 txidFloor: Int64, nextStartSequenceID: Int64) {
        self.name = name
        self.namespace = namespace
        self.lock = lock
        let options = namespace.options
        let limits = Core.Limits(entriesInFlightMax: options.entriesInFlightMax, entryBytesMax: options.entryBytesMax,
                                 bufferedBytesMax: options.bufferedBytesMax, segmentBytesMax: options.segmentBytesMax,
                                 segmentAgeMax: options.segmentAgeMax, compression: options.compression)
        core = Mutex(Core(name: name, limits: limits, info: info, infoVersion: infoVersion, txidFloor: txidFloor,
                          nextStartSequenceID: nextStartSequenceID))
    }

    var options: LogOptions { namespace.options }
    var store: any MetadataStore { namespace.store }

    // MARK: Opening

    static func open(_ name: String, namespace: Namespace, owner: String) async throws -> LogWriter {
        let lock = try await OwnershipLock.acquire(LogKeys.lock(name), owner: owner, session: namespace.session,
                                                   wait: namespace.options.ownershipWait, log: name)
        do {
            let (info, infoVersion) = try await namespace.info(name)
            var segments = try await namespace.segments(name)
            if let (last, version) = segments.last, last.state == .inProgress {
                // An earlier writer's segment: fence its ledger, find its end, complete it.
                let completed = try await SegmentRecovery.recover(name, last, version: version, namespace: namespace)
                segments[segments.count - 1] = (completed, version)
            }
            let last = segments.last?.segment
            if info.endOfStream || last?.endOfStream == true { throw LogError.endOfStream(name) }
            let floor = max(info.maxTxID, segments.map(\.segment.lastTxID).max() ?? -1)
            let start = last.map { $0.startSequenceID + $0.recordCount } ?? 0
            let writer = LogWriter(name: name, namespace: namespace, lock: lock, info: info, infoVersion: infoVersion,
                                   txidFloor: floor, nextStartSequenceID: start)
            writer.applyRetentionInBackground()
            return writer
        } catch {
            await lock.release()
            throw error
        }
    }

    // MARK: Writing

    /// Writes `record`; returns its DLSN once it is durable. Txids must not decrease.
    public func write(_ record: LogRecord) async throws -> DLSN {
        try await writeBulk(assigning: [(record.txid, record.payload)])[0]
    }

    /// Writes `records` in order, as one step (never interleaved with other writes); returns their DLSNs once
    /// all are durable, or the first failure.
    public func writeBulk(_ records: [LogRecord]) async throws -> [DLSN] {
        try await writeBulk(assigning: records.map { ($0.txid, $0.payload) })
    }

    /// Like `writeBulk`, where a record without a txid gets one from the writer: the wall clock in
    /// milliseconds, raised to the log's last txid when that is higher (txids never decrease). The proxy
    /// writes records of clients that give none this way.
    public func writeBulk(assigning records: [(txid: Int64?, payload: [UInt8])]) async throws -> [DLSN] {
        guard !records.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            writeBulk(calls: [(records, { @Sendable in continuation.resume(with: $0) })])
        }
    }

    /// Like `writeBulk(assigning:)`, calling `completion` once instead of suspending: on the thread that
    /// confirmed the records, or on the caller's own stack when they are refused at once (so the caller must
    /// not hold a lock the completion takes). The proxy answers its clients from there, with no task and no
    /// hop between threads per request.
    public func writeBulk(assigning records: [(txid: Int64?, payload: [UInt8])],
                          completion: @escaping @Sendable (Result<[DLSN], any Error>) -> Void) {
        writeBulk(calls: [(records, completion)])
    }

    /// A call of `writeBulk(assigning:completion:)`: its records and its completion.
    public typealias Call = (records: [(txid: Int64?, payload: [UInt8])],
                             completion: @Sendable (Result<[DLSN], any Error>) -> Void)

    /// Several calls of `writeBulk(assigning:completion:)` taken in one step, in order, each taken or refused on
    /// its own. What is taken goes out together: a proxy hands over the writes one read of a connection brought,
    /// and while a slot is free they make one entry, not an entry of the first write with the rest behind it.
    public func writeBulk(calls: [Call]) {
        var taken: [[Core.Incoming]] = []
        for call in calls {
            if call.records.isEmpty {
                call.completion(.success([]))
            } else if let large = call.records.first(where: { $0.payload.count > LogRecord.payloadBytesMax }) {
                call.completion(.failure(LogError.recordTooLarge(name, bytes: large.payload.count)))
            } else {
                taken.append(incoming(call.records, done: call.completion))
            }
        }
        if !taken.isEmpty { handle(.write(taken, now: Namespace.now)) }
    }

    /// Why this writer takes no more writes (failed, lost its log, closed, sealed), or nil while it does.
    public var failure: LogError? {
        if let failure = core.withLock({ $0.failure }) { return failure }
        return lock.lostReason.map { .ownershipLost(name, $0) }
    }

    /// The highest txid taken so far (the floor for the next one).
    public var lastTxID: Int64 { core.withLock { $0.txidFloor } }

    /// The core's records of one call, each delivering to the call's `Gather`.
    private func incoming(_ records: [(txid: Int64?, payload: [UInt8])],
                          done: @escaping @Sendable (Result<[DLSN], any Error>) -> Void) -> [Core.Incoming] {
        let gather = Gather(count: records.count, done: done)
        return records.enumerated().map { index, record in
            Core.Incoming(txid: record.txid, payload: record.payload) { gather.deliver(index, $0) }
        }
    }

    // MARK: Driving the core

    /// Feeds `event` to the core (a lost lease first, as its own event) and runs the actions.
    func handle(_ event: Core.Event) {
        let lost = lock.lostReason
        let actions = core.withLock { core -> [Core.Action] in
            var actions = core.failure == nil ? lost.map { core.handle(.failed(.ownershipLost(name, $0))) } ?? [] : []
            actions += core.handle(event)
            // Entries reach the ledger here, under the lock, so their order is the records' order.
            return actions.filter { action in
                guard case .send(let ledger, let payload, let sequence, let index, let records) = action else { return true }
                namespace.meters.recordsPerEntry.record(records)
                ledger.append(payload) { result in
                    switch result {
                    case .success(let entry):
                        self.handle(.entryConfirmed(sequence: sequence, index: index, entry: entry, at: .now))
                    case .failure(let error):
                        self.handle(.failed(self.logError(error, segment: sequence)))
                    }
                }
                return false
            }
        }
        for action in actions { perform(action) }
    }

    private func perform(_ action: Core.Action) {
        switch action {
        case .acknowledge(let done):
            for (waiter, dlsn) in done { waiter(.success(dlsn)) }
        case .fail(let waiters, let failure):
            for waiter in waiters { waiter(.failure(failure)) }
        case .settle(let signals, let failure):
            for signal in signals { signal(failure) }
        case .startSegment(let info, let infoVersion, let segment):
            Task { await startSegment(info: info, infoVersion: infoVersion, segment: segment) }
        case .completeSegment(let ledger, var record, let version):
            record.completionTime = Namespace.now
            let (name, key, lockCheck) = (name, LogKeys.segment(name, record.sequence), Transaction.Check(key: lock.key, version: lock.version))
            let completed = record
            Task {
                do {
                    // One commit closes the ledger and completes the segment: a stream's roll or close costs one
                    // metadata round trip, not two.
                    let (_, committed) = try await ledger.close { closed in
                        guard closed.lastEntry.rawValue == completed.lastEntry else {
                            throw LogError.damaged(name, "segment \(completed.sequence) ends at entry \(completed.lastEntry) but its ledger closed at \(closed.lastEntry)")
                        }
                        return Transaction(checks: [.init(key: key, version: version), lockCheck],
                                           operations: [.put(key: key, value: LogSegmentCodec.encode(completed), lease: nil)])
                    }
                    handle(.segmentRecordWritten(completed, version: committed))
                } catch {
                    handle(.failed(logError(error, segment: completed.sequence)))
                }
            }
        case .writeSegmentRecord(var record, let version):
            record.completionTime = Namespace.now
            Task {
                let key = LogKeys.segment(name, record.sequence)
                do {
                    let revision = try await store.commit(Transaction(
                        checks: [.init(key: key, version: version), .init(key: lock.key, version: lock.version)],
                        operations: [.put(key: key, value: LogSegmentCodec.encode(record), lease: nil)]))
                    handle(.segmentRecordWritten(record, version: Version(revision)))
                } catch {
                    handle(.failed(logError(error, segment: record.sequence)))
                }
            }
        case .applyRetention:
            applyRetentionInBackground()
        case .send:
            preconditionFailure("entries are sent under the core's lock")
        }
    }

    /// The log's view of a step's failure.
    private func logError(_ error: any Error, segment: Int64?) -> LogError {
        switch error {
        case let error as LogError: return error
        case LedgerError.fenced(let ledger):
            return .ownershipLost(name, "another writer fenced segment \(segment.map(String.init) ?? "?")'s ledger \(ledger)")
        case let error as LedgerError: return .ledger(name, error)
        case MetadataError.versionConflict: return .ownershipLost(name, "another writer changed the log's records")
        default: return .busy(name, "\(error)")
        }
    }

    /// Off the write path: a failure leaves old segments for the next roll.
    private func applyRetentionInBackground() {
        Task { try? await applyRetention() }
    }

    // MARK: Segments

    /// Creates the next segment: a new ledger, then one transaction that bumps the log's segment counter (by
    /// compare-and-set, so a concurrent writer loses) and creates the segment record.
    private func startSegment(info: LogInfo, infoVersion: Version, segment template: LogSegment) async {
        var rng = SystemRandomNumberGenerator()
        let ledger: LedgerWriter
        do {
            ledger = try await LedgerWriter.create(quorums: options.quorums, password: options.ledgerPassword,
                                                   pool: namespace.pool, allocator: namespace.allocator,
                                                   custom: ["log": Array(name.utf8)], using: &rng)
        } catch {
            return handle(.failed(logError(error, segment: nil)))
        }
        var segment = template
        segment.ledger = ledger.id
        segment.creationTime = Namespace.now
        let segmentKey = LogKeys.segment(name, segment.sequence)
        let transaction = Transaction(
            checks: [.init(key: LogKeys.info(name), version: infoVersion), .init(key: segmentKey, version: .absent),
                     // Only the lock's holder may start a segment: a writer whose lease ran out loses here.
                     .init(key: lock.key, version: lock.version)],
            operations: [.put(key: LogKeys.info(name), value: LogInfoCodec.encode(info), lease: nil),
                         .put(key: segmentKey, value: LogSegmentCodec.encode(segment), lease: nil)])
        let revision: Revision
        do {
            revision = try await store.commit(transaction)
        } catch {
            // The ledger holds nothing yet: remove it rather than leave it to an operator, unless the commit
            // may have been applied (an unclear failure) and the segment's record names it.
            _ = try? await ledger.close()
            let applied = (try? await store.get(segmentKey)).flatMap { $0 }.flatMap { try? LogSegmentCodec.decode($0.value) }
            if applied?.ledger != ledger.id { try? await namespace.pool.deleteLedger(ledger.id, password: options.ledgerPassword) }
            return handle(.failed(logError(error, segment: segment.sequence)))
        }
        handle(.segmentStarted(segment, ledger, info: info, version: Version(revision), at: .now))
    }

    // MARK: Ending

    /// Waits until every record taken so far is confirmed (or the writer failed).
    public func flush() async throws {
        let failure = await withCheckedContinuation { (waiter: CheckedContinuation<LogError?, Never>) in
            handle(.flush { waiter.resume(returning: $0) })
        }
        if let failure { throw failure }
    }

    /// Flushes, completes the current segment and gives up ownership. Later writes fail with `writerClosed`.
    public func close() async throws {
        try await close(releasingLock: true)
    }

    /// Like `close()`; with `releasingLock` false the log's lock is left to go with the namespace's shared
    /// lease. A draining proxy closes its namespace right after its writers, which removes every lock at once
    /// instead of one delete per log.
    public func close(releasingLock: Bool) async throws {
        let failure = await withCheckedContinuation { (waiter: CheckedContinuation<LogError?, Never>) in
            handle(.close { waiter.resume(returning: $0) })
        }
        if releasingLock || lock.session == nil { await lock.release() }
        if let failure { throw failure }
    }

    /// Seals the log: writes an end-of-stream marker after every record taken so far (later writes are refused
    /// from this call on), completes the segment and records the seal, so no writer can append again and
    /// readers end there. Returns the marker's DLSN.
    @discardableResult
    public func markEndOfStream() async throws -> DLSN {
        let marker = RecordBatch.Record(flags: RecordBatch.Record.control | RecordBatch.Record.endOfStream,
                                        txid: Int64.max, payload: [])
        let dlsn = try await withCheckedThrowingContinuation { continuation in
            handle(.endOfStream(marker) { continuation.resume(with: $0) })
        }
        // The marker's confirmation asked for the segment to be completed; flush waits for that.
        try await flush()
        var (info, version) = try await namespace.info(name)
        info.endOfStream = true
        _ = try await store.commit(Transaction(
            checks: [.init(key: LogKeys.info(name), version: version), .init(key: lock.key, version: lock.version)],
            operations: [.put(key: LogKeys.info(name), value: LogInfoCodec.encode(info), lease: nil)]))
        try await close()
        return dlsn
    }
}

/// Collects the DLSNs of one `writeBulk` and reports once: all of them, or the first failure.
private final class Gather: Sendable {
    private let state: Mutex<(dlsns: [DLSN?], left: Int, done: (@Sendable (Result<[DLSN], any Error>) -> Void)?)>

    init(count: Int, done: @escaping @Sendable (Result<[DLSN], any Error>) -> Void) {
        state = Mutex((Array(repeating: nil, count: count), count, done))
    }

    func deliver(_ index: Int, _ result: Result<DLSN, any Error>) {
        let report = state.withLock { s -> (@Sendable (Result<[DLSN], any Error>) -> Void, Result<[DLSN], any Error>)? in
            guard let done = s.done else { return nil }
            switch result {
            case .failure(let error):
                s.done = nil
                return (done, .failure(error))
            case .success(let dlsn):
                s.dlsns[index] = dlsn
                s.left -= 1
                guard s.left == 0 else { return nil }
                s.done = nil
                return (done, .success(s.dlsns.map { $0! }))
            }
        }
        if let (done, result) = report { done(result) }
    }
}
