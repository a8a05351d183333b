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
public final class LogWriter: Sendable {
    public let name: String
    let namespace: Namespace
    let lock: OwnershipLock
    /// Called once with the record's DLSN or the write's failure.
    typealias Waiter = @Sendable (Result<DLSN, any Error>) -> Void

    struct Buffered {
        var record: RecordBatch.Record
        var waiter: Waiter
    }

    enum Phase { case idle, starting, open, completing }

    struct State {
        var info: LogInfo
        var infoVersion: Version
        var phase = Phase.idle
        var segment: LogSegment?
        var segmentVersion = Version.absent
        var segmentStarted = ContinuousClock.now
        var ledger: LedgerWriter?
        var buffer: [Buffered] = []
        var inFlight = 0
        /// Records of the current segment sent so far (the next one's position).
        var nextPosition: Int64 = 0
        var segmentBytes: Int64 = 0
        /// The last confirmed record of the current segment.
        var lastEntry: Int64 = -1
        var lastSlot: Int64 = -1
        var lastTxID: Int64 = -1
        /// The highest txid taken: later records may not go below it.
        var txidFloor: Int64
        var nextStartSequenceID: Int64
        var rollWanted = false
        var closing = false
        var endOfStream = false
        var failure: LogError?
        /// A truncation point inside the current segment, applied when it is completed.
        var pendingMinActive: DLSN?
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    private init(name: String, namespace: Namespace, lock: OwnershipLock, info: LogInfo, infoVersion: Version,
                 txidFloor: Int64, nextStartSequenceID: Int64) {
        self.name = name
        self.namespace = namespace
        self.lock = lock
        state = Mutex(State(info: info, infoVersion: infoVersion, txidFloor: txidFloor, nextStartSequenceID: nextStartSequenceID))
    }

    var options: LogOptions { namespace.options }
    var store: any MetadataStore { namespace.store }

    // MARK: Opening

    static func open(_ name: String, namespace: Namespace, owner: String) async throws -> LogWriter {
        let lock = try await OwnershipLock.acquire(LogKeys.lock(name), owner: owner, store: namespace.store,
                                                   leaseSeconds: namespace.options.ownershipLeaseSeconds,
                                                   wait: namespace.options.ownershipWait, log: name)
        do {
            let (info, infoVersion) = try await namespace.info(name)
            var segments = try await namespace.segments(name)
            if let (last, version) = segments.last, last.state == .inProgress {
                // An earlier writer's segment: fence its ledger, find its end, complete it.
                let completed = try await recover(name, last, version: version, namespace: namespace)
                segments[segments.count - 1] = (completed, version)
            }
            let last = segments.last?.segment
            if info.endOfStream || last?.endOfStream == true { throw LogError.endOfStream(name) }
            let floor = max(info.maxTxID, segments.map(\.segment.lastTxID).max() ?? -1)
            let start = last.map { $0.startSequenceID + $0.recordCount } ?? 0
            let writer = LogWriter(name: name, namespace: namespace, lock: lock, info: info, infoVersion: infoVersion,
                                   txidFloor: floor, nextStartSequenceID: start)
            Task { try? await writer.applyRetention() }
            return writer
        } catch {
            await lock.release()
            throw error
        }
    }

    /// Recovers the ledger of an in-progress segment (fencing its writer) and completes the segment at the
    /// recovered end, read from its last entry.
    static func recover(_ name: String, _ segment: LogSegment, version: Version,
                        namespace: Namespace) async throws -> LogSegment {
        let password = namespace.options.ledgerPassword
        let closed: LedgerMetadata
        do {
            closed = try await LedgerRecovery(pool: namespace.pool).recover(segment.ledger, password: password)
        } catch let error as LedgerError {
            throw LogError.ledger(name, error)
        }
        var done = segment
        done.state = .completed
        done.completionTime = Namespace.now
        if closed.lastEntry.rawValue >= 0 {
            let reader = try await LedgerReader.open(segment.ledger, password: password, pool: namespace.pool)
            let batch: RecordBatch.Decoded
            do {
                batch = try RecordBatch.decode(try await reader.read(closed.lastEntry))
            } catch let error as RecordBatch.Malformed {
                throw LogError.damaged(name, "segment \(segment.sequence), \(closed.lastEntry): \(error)")
            }
            done.lastEntry = closed.lastEntry.rawValue
            done.lastSlot = Int64(batch.records.count - 1)
            done.lastTxID = batch.records.last!.txid
            done.recordCount = batch.firstPosition + Int64(batch.records.count)
            done.endOfStream = batch.records.last!.isEndOfStream
        }
        do {
            _ = try await namespace.store.put(LogKeys.segment(name, segment.sequence), value: LogSegmentCodec.encode(done),
                                              ifVersion: version)
        } catch MetadataError.versionConflict {
            throw LogError.ownershipLost(name, "segment \(segment.sequence) changed while it was being recovered")
        }
        return done
    }

    // MARK: Writing

    /// Writes `record`; returns its DLSN once it is durable. Txids must not decrease.
    public func write(_ record: LogRecord) async throws -> DLSN {
        try await withCheckedThrowingContinuation { continuation in
            enqueue([record]) { results in continuation.resume(with: results.map { $0[0] }) }
        }
    }

    /// Writes `records` in order, as one step (never interleaved with other writes); returns their DLSNs once
    /// all are durable, or the first failure.
    public func writeBulk(_ records: [LogRecord]) async throws -> [DLSN] {
        guard !records.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            enqueue(records) { continuation.resume(with: $0) }
        }
    }

    /// Takes `records` into the buffer in one step and calls `done` once with all their DLSNs, or the first
    /// failure.
    private func enqueue(_ records: [LogRecord], done: @escaping @Sendable (Result<[DLSN], any Error>) -> Void) {
        if let large = records.first(where: { $0.payload.count > LogRecord.payloadBytesMax }) {
            return done(.failure(LogError.recordTooLarge(name, bytes: large.payload.count)))
        }
        let gather = Gather(count: records.count, done: done)
        let (refused, effects) = state.withLock { s -> (LogError?, [Effect]) in
            let floor = s.txidFloor
            for record in records {
                if let failure = refusal(&s, RecordBatch.Record(txid: record.txid, payload: []), checkTxID: true) {
                    s.txidFloor = floor
                    return (failure, [])
                }
            }
            for (index, record) in records.enumerated() {
                s.buffer.append(Buffered(record: RecordBatch.Record(txid: record.txid, payload: record.payload)) { result in
                    gather.deliver(index, result)
                })
            }
            return (nil, pump(&s))
        }
        if let refused { return done(.failure(refused)) }
        perform(effects)
    }

    /// Takes a control record (end of stream) into the buffer; no txid check.
    private func enqueueControl(_ record: RecordBatch.Record) async throws -> DLSN {
        try await withCheckedThrowingContinuation { continuation in
            let (refused, effects) = state.withLock { s -> (LogError?, [Effect]) in
                if let failure = refusal(&s, record, checkTxID: false) { return (failure, []) }
                s.buffer.append(Buffered(record: record) { continuation.resume(with: $0) })
                return (nil, pump(&s))
            }
            if let refused { return continuation.resume(throwing: refused) }
            perform(effects)
        }
    }

    /// Why `record` cannot be taken now, or nil (then its txid is the new floor).
    private func refusal(_ s: inout State, _ record: RecordBatch.Record, checkTxID: Bool) -> LogError? {
        if let failure = s.failure { return failure }
        if let lost = lock.lostReason {
            s.failure = .ownershipLost(name, lost)
            return s.failure
        }
        if s.endOfStream { return .endOfStream(name) }
        if s.closing { return .writerClosed(name) }
        if checkTxID {
            guard record.txid >= 0, record.txid >= s.txidFloor else {
                return .txidOutOfOrder(name, txid: record.txid, last: s.txidFloor)
            }
            s.txidFloor = record.txid
        }
        return nil
    }

    enum Effect {
        case startSegment(firstTxID: Int64)
        case completeSegment
        case resumeIdle([CheckedContinuation<Void, Never>])
    }

    /// Moves the writer on as far as it can without waiting: starts a segment when records wait and none is
    /// open, sends entries while fewer than the limit are in flight, completes the segment for a roll once
    /// nothing is in flight. Entries are handed to the ledger here, under the lock, so their order is the
    /// records' order.
    private func pump(_ s: inout State) -> [Effect] {
        var effects: [Effect] = []
        switch s.phase {
        case .idle:
            if let first = s.buffer.first, s.failure == nil {
                s.phase = .starting
                effects.append(.startSegment(firstTxID: first.record.txid))
            }
        case .open:
            while !s.rollWanted, !s.buffer.isEmpty, s.inFlight < options.entriesInFlightMax, s.failure == nil {
                transmit(&s)
            }
            if s.rollWanted, s.inFlight == 0, s.failure == nil {
                s.phase = .completing
                effects.append(.completeSegment)
            }
        case .starting, .completing:
            break
        }
        if s.buffer.isEmpty, s.inFlight == 0, s.phase == .idle || s.phase == .open || s.failure != nil, !s.idleWaiters.isEmpty {
            effects.append(.resumeIdle(s.idleWaiters))
            s.idleWaiters.removeAll()
        }
        return effects
    }

    /// Sends the records at the front of the buffer as one entry.
    private func transmit(_ s: inout State) {
        var count = 0
        var bytes = RecordBatch.headerBytes
        for item in s.buffer {
            if count > 0 && bytes + item.record.encodedBytes > options.entryBytesMax { break }
            bytes += item.record.encodedBytes
            count += 1
        }
        let taken = Array(s.buffer.prefix(count))
        s.buffer.removeFirst(count)
        let payload = RecordBatch.encode(taken.map(\.record), firstPosition: s.nextPosition, codec: options.compression)
        s.nextPosition += Int64(count)
        s.segmentBytes += Int64(payload.count)
        s.inFlight += 1
        let sequence = s.segment!.sequence
        let waiters = taken.map(\.waiter)
        let lastTxID = taken.last!.record.txid
        let endOfStream = taken.last!.record.isEndOfStream
        s.ledger!.append(payload) { result in
            self.entryDone(sequence, waiters: waiters, lastTxID: lastTxID, endOfStream: endOfStream, result: result)
        }
    }

    private func entryDone(_ sequence: Int64, waiters: [Waiter], lastTxID: Int64, endOfStream: Bool,
                           result: Result<EntryID, any Error>) {
        switch result {
        case .success(let entry):
            let effects = state.withLock { s -> [Effect] in
                s.inFlight -= 1
                s.lastEntry = entry.rawValue
                s.lastSlot = Int64(waiters.count - 1)
                s.lastTxID = lastTxID
                if endOfStream || s.segmentBytes >= options.segmentBytesMax
                    || ContinuousClock.now - s.segmentStarted >= options.segmentAgeMax {
                    s.rollWanted = true
                }
                return pump(&s)
            }
            for (slot, waiter) in waiters.enumerated() {
                waiter(.success(DLSN(segment: sequence, entry: entry.rawValue, slot: Int64(slot))))
            }
            perform(effects)
        case .failure(let error):
            let failure = fail(with: error, segment: sequence)
            for waiter in waiters { waiter(.failure(failure)) }
        }
    }

    /// Ends the writer with the failure `error` maps to; fails every buffered record; returns the failure.
    @discardableResult
    private func fail(with error: any Error, segment: Int64?) -> LogError {
        let failure: LogError
        switch error {
        case let error as LogError: failure = error
        case LedgerError.fenced(let ledger):
            failure = .ownershipLost(name, "another writer fenced segment \(segment.map(String.init) ?? "?")'s ledger \(ledger)")
        case let error as LedgerError: failure = .ledger(name, error)
        case MetadataError.versionConflict: failure = .ownershipLost(name, "another writer changed the log's records")
        default: failure = .busy(name, "\(error)")
        }
        let (buffered, idle, recorded) = state.withLock { s -> ([Buffered], [CheckedContinuation<Void, Never>], LogError) in
            if s.failure == nil { s.failure = failure }
            defer {
                s.buffer.removeAll()
                s.idleWaiters.removeAll()
            }
            return (s.buffer, s.idleWaiters, s.failure!)
        }
        for item in buffered { item.waiter(.failure(recorded)) }
        for waiter in idle { waiter.resume() }
        return recorded
    }

    private func perform(_ effects: [Effect]) {
        for effect in effects {
            switch effect {
            case .startSegment(let first):
                Task { await startSegment(firstTxID: first) }
            case .completeSegment:
                Task {
                    do {
                        try await completeSegment()
                        // Off the write path: a failure here leaves old segments for the next roll.
                        Task { try? await applyRetention() }
                        let next = state.withLock { s -> [Effect] in
                            s.phase = .idle
                            s.rollWanted = false
                            return pump(&s)
                        }
                        perform(next)
                    } catch {
                        fail(with: error, segment: nil)
                    }
                }
            case .resumeIdle(let waiters):
                for waiter in waiters { waiter.resume() }
            }
        }
    }

    // MARK: Segments

    /// Creates the next segment: a new ledger, then one transaction that bumps the log's segment counter (by
    /// compare-and-set, so a concurrent writer loses) and creates the segment record.
    private func startSegment(firstTxID: Int64) async {
        var rng = SystemRandomNumberGenerator()
        let ledger: LedgerWriter
        do {
            ledger = try await LedgerWriter.create(quorums: options.quorums, password: options.ledgerPassword,
                                                   pool: namespace.pool, allocator: namespace.allocator,
                                                   custom: ["log": Array(name.utf8)], using: &rng)
        } catch {
            fail(with: error, segment: nil)
            return
        }
        let (info, infoVersion, startSequenceID) = state.withLock { s in (s.info, s.infoVersion, s.nextStartSequenceID) }
        var next = info
        next.lastSegment += 1
        next.maxTxID = max(info.maxTxID, state.withLock { $0.lastTxID })
        let segment = LogSegment(sequence: next.lastSegment, ledger: ledger.id, firstTxID: firstTxID,
                                 startSequenceID: startSequenceID, creationTime: Namespace.now)
        let segmentKey = LogKeys.segment(name, segment.sequence)
        let transaction = Transaction(
            checks: [.init(key: LogKeys.info(name), version: infoVersion), .init(key: segmentKey, version: .absent)],
            operations: [.put(key: LogKeys.info(name), value: LogInfoCodec.encode(next), lease: nil),
                         .put(key: segmentKey, value: LogSegmentCodec.encode(segment), lease: nil)])
        let revision: Revision
        do {
            revision = try await store.commit(transaction)
        } catch {
            // The ledger holds nothing yet: remove it rather than leave it to an operator.
            _ = try? await ledger.close()
            try? await namespace.pool.deleteLedger(ledger.id, password: options.ledgerPassword)
            fail(with: error, segment: segment.sequence)
            return
        }
        let effects = state.withLock { s -> [Effect] in
            s.info = next
            s.infoVersion = Version(revision)
            s.segment = segment
            s.segmentVersion = Version(revision)
            s.segmentStarted = .now
            s.ledger = ledger
            s.nextPosition = 0
            s.segmentBytes = 0
            (s.lastEntry, s.lastSlot) = (-1, -1)
            s.phase = .open
            return pump(&s)
        }
        perform(effects)
    }

    /// Closes the current segment's ledger and records the segment as completed (nothing may be in flight).
    private func completeSegment() async throws {
        let (ledger, segment, version, last, records, minActive, endOfStream) = state.withLock { s in
            (s.ledger!, s.segment!, s.segmentVersion, (s.lastEntry, s.lastSlot, s.lastTxID), s.nextPosition,
             s.pendingMinActive, s.endOfStream)
        }
        do {
            try await ledger.close()
        } catch let error as LedgerError {
            throw error
        }
        var done = segment
        done.state = .completed
        (done.lastEntry, done.lastSlot, done.lastTxID) = last
        done.recordCount = records
        done.completionTime = Namespace.now
        done.endOfStream = endOfStream
        if let minActive, minActive.segment == segment.sequence { done.truncation = .partiallyTruncated(minActive: minActive) }
        _ = try await store.put(LogKeys.segment(name, segment.sequence), value: LogSegmentCodec.encode(done), ifVersion: version)
        state.withLock { s in
            s.info.maxTxID = max(s.info.maxTxID, done.lastTxID)
            s.nextStartSequenceID = segment.startSequenceID + records
            s.segment = nil
            s.ledger = nil
            s.pendingMinActive = nil
        }
    }

    // MARK: Truncation and retention

    /// Marks everything before `dlsn` as truncated: earlier completed segments whole, and the part of `dlsn`'s
    /// segment before it. Readers skip truncated data; retention deletes truncated segments. Truncation only
    /// moves forward, and never touches data after `dlsn`.
    public func truncate(before dlsn: DLSN) async throws {
        let current = state.withLock { s in s.phase == .open || s.phase == .completing ? s.segment?.sequence : nil }
        for (segment, version) in try await namespace.segments(name) {
            var changed = segment
            if segment.sequence < dlsn.segment {
                guard segment.state == .completed, segment.truncation != .truncated else { continue }
                changed.truncation = .truncated
            } else if segment.sequence == dlsn.segment, dlsn > DLSN(segment: dlsn.segment, entry: 0, slot: 0) {
                if segment.sequence == current {
                    // This writer's open segment: recorded when it is completed (its record is ours to change).
                    state.withLock { s in s.pendingMinActive = max(s.pendingMinActive ?? dlsn, dlsn) }
                    continue
                }
                guard segment.state == .completed else { continue }
                switch segment.truncation {
                case .truncated: continue
                case .partiallyTruncated(let earlier) where earlier >= dlsn: continue
                default: changed.truncation = .partiallyTruncated(minActive: dlsn)
                }
            } else {
                continue
            }
            do {
                _ = try await store.put(LogKeys.segment(name, segment.sequence), value: LogSegmentCodec.encode(changed),
                                        ifVersion: version)
            } catch MetadataError.versionConflict {
                throw LogError.ownershipLost(name, "segment \(segment.sequence) changed while it was being truncated")
            }
        }
    }

    /// Deletes completed segments that are truncated, or older than the retention age, with their ledgers. The
    /// newest segment always stays: it carries the log's position and record count forward.
    public func applyRetention() async throws {
        let segments = try await namespace.segments(name)
        let cutoff = options.retentionAge.map { Namespace.now - Int64($0.components.seconds * 1000) }
        for (segment, version) in segments.dropLast() where segment.state == .completed {
            let expired = cutoff.map { segment.completionTime < $0 } ?? false
            guard segment.truncation == .truncated || expired else { continue }
            try await namespace.deleteSegment(name, segment, version: version)
        }
    }

    // MARK: Ending

    /// Waits until every record taken so far is confirmed (or the writer failed).
    public func flush() async throws {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.buffer.isEmpty && s.inFlight == 0 && (s.phase == .idle || s.phase == .open) || s.failure != nil { return true }
                s.idleWaiters.append(waiter)
                return false
            }
            if now { waiter.resume() }
        }
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    /// Flushes, completes the current segment and gives up ownership. Later writes fail with `writerClosed`.
    public func close() async throws {
        state.withLock { $0.closing = true }
        defer { Task { await lock.release() } }
        try await flush()
        if state.withLock({ $0.phase == .open }) {
            state.withLock { $0.phase = .completing }
            try await completeSegment()
            state.withLock { $0.phase = .idle }
        }
        state.withLock { s in s.failure = s.failure ?? .writerClosed(name) }
        await lock.release()
    }

    /// Seals the log: writes an end-of-stream marker after every record taken so far, completes the segment
    /// and records the seal, so no writer can append again and readers end there. Returns the marker's DLSN.
    @discardableResult
    public func markEndOfStream() async throws -> DLSN {
        let marker = RecordBatch.Record(flags: RecordBatch.Record.control | RecordBatch.Record.endOfStream,
                                        txid: Int64.max, payload: [])
        let dlsn = try await enqueueControl(marker)
        state.withLock { $0.endOfStream = true }
        try await flush()
        // The marker's confirmation asked for a roll: wait until that completion is done.
        while state.withLock({ $0.phase == .completing || $0.phase == .open }) {
            if let failure = state.withLock({ $0.failure }) { throw failure }
            try await Task.sleep(for: .milliseconds(5))
        }
        var (info, version) = try await namespace.info(name)
        info.endOfStream = true
        _ = try await store.put(LogKeys.info(name), value: LogInfoCodec.encode(info), ifVersion: version)
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
