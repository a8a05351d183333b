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
        var bufferBytes = 0
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
        let lock = try await OwnershipLock.acquire(LogKeys.lock(name), owner: owner, session: namespace.session,
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
        var done = segment
        done.state = .completed
        done.completionTime = Namespace.now
        let closed: LedgerMetadata?
        do {
            closed = try await LedgerRecovery(pool: namespace.pool).recover(segment.ledger, password: password)
        } catch LedgerError.noSuchLedger {
            // Its writer failed between creating the segment's record and using the ledger (or the ledger was
            // removed after an unclear commit): the segment holds nothing.
            closed = nil
        } catch let error as LedgerError {
            throw LogError.ledger(name, error)
        }
        if let closed, closed.lastEntry.rawValue >= 0 {
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
            enqueue([(record.txid, record.payload)]) { results in continuation.resume(with: results.map { $0[0] }) }
        }
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
            enqueue(records) { continuation.resume(with: $0) }
        }
    }

    /// Why this writer takes no more writes (failed, lost its log, closed, sealed), or nil while it does.
    public var failure: LogError? {
        if let lost = lock.lostReason { return state.withLock { $0.failure } ?? .ownershipLost(name, lost) }
        return state.withLock { $0.failure }
    }

    /// The highest txid taken so far (the floor for the next one).
    public var lastTxID: Int64 { state.withLock { $0.txidFloor } }

    /// Takes `records` into the buffer in one step and calls `done` once with all their DLSNs, or the first
    /// failure.
    private func enqueue(_ records: [(txid: Int64?, payload: [UInt8])],
                         done: @escaping @Sendable (Result<[DLSN], any Error>) -> Void) {
        if let large = records.first(where: { $0.payload.count > LogRecord.payloadBytesMax }) {
            return done(.failure(LogError.recordTooLarge(name, bytes: large.payload.count)))
        }
        let gather = Gather(count: records.count, done: done)
        let bytes = records.reduce(0) { $0 + $1.payload.count + RecordBatch.recordHeaderBytes }
        let now = Namespace.now
        let (refused, effects) = state.withLock { s -> (LogError?, [Effect]) in
            let floor = s.txidFloor
            var txids: [Int64] = []
            for record in records {
                let txid = record.txid ?? max(now, s.txidFloor)
                if let failure = refusal(&s, RecordBatch.Record(txid: txid, payload: []), checkTxID: true) {
                    s.txidFloor = floor
                    return (failure, pump(&s))
                }
                txids.append(txid)
            }
            guard s.bufferBytes + bytes <= options.bufferedBytesMax || s.buffer.isEmpty else {
                s.txidFloor = floor
                return (.busy(name, "\(s.bufferBytes) bytes already wait to be written (the writer's limit is \(options.bufferedBytesMax)); retry once some are confirmed"), [])
            }
            for (index, record) in records.enumerated() {
                s.buffer.append(Buffered(record: RecordBatch.Record(txid: txids[index], payload: record.payload)) { result in
                    gather.deliver(index, result)
                })
            }
            s.bufferBytes += bytes
            return (nil, pump(&s))
        }
        perform(effects)
        if let refused { done(.failure(refused)) }
    }

    /// Takes the end-of-stream marker into the buffer, after every record taken so far. From the same step on,
    /// every later write is refused, so the marker is the last record of the log.
    private func enqueueEndOfStream(_ record: RecordBatch.Record) async throws -> DLSN {
        try await withCheckedThrowingContinuation { continuation in
            let (refused, effects) = state.withLock { s -> (LogError?, [Effect]) in
                if let failure = refusal(&s, record, checkTxID: false) { return (failure, pump(&s)) }
                s.buffer.append(Buffered(record: record) { continuation.resume(with: $0) })
                s.bufferBytes += record.encodedBytes
                s.endOfStream = true
                s.txidFloor = .max
                return (nil, pump(&s))
            }
            perform(effects)
            if let refused { continuation.resume(throwing: refused) }
        }
    }

    /// Why `record` cannot be taken now, or nil (then its txid is the new floor).
    private func refusal(_ s: inout State, _ record: RecordBatch.Record, checkTxID: Bool) -> LogError? {
        if let failure = s.failure { return failure }
        if let lost = lock.lostReason {
            // `pump` fails what waits, with this.
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
        /// Records that can no longer be written, and the error they fail with.
        case failBuffered([Buffered], LogError)
    }

    /// Moves the writer on as far as it can without waiting: starts a segment when records wait and none is
    /// open, sends entries while fewer than the limit are in flight, completes the segment for a roll once
    /// nothing is in flight. Entries are handed to the ledger here, under the lock, so their order is the
    /// records' order.
    private func pump(_ s: inout State) -> [Effect] {
        var effects: [Effect] = []
        if s.failure == nil, let lost = lock.lostReason { s.failure = .ownershipLost(name, lost) }
        if let failure = s.failure, !s.buffer.isEmpty {
            effects.append(.failBuffered(s.buffer, failure))
            s.buffer.removeAll()
            s.bufferBytes = 0
        }
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
        if s.buffer.isEmpty, s.inFlight == 0 && (s.phase == .idle || s.phase == .open) || s.failure != nil, !s.idleWaiters.isEmpty {
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
        s.bufferBytes -= taken.reduce(0) { $0 + $1.record.encodedBytes }
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
                // Confirmations arrive in entry order, but their callbacks may run on different threads: only
                // the highest entry describes the segment's end.
                if entry.rawValue > s.lastEntry {
                    s.lastEntry = entry.rawValue
                    s.lastSlot = Int64(waiters.count - 1)
                    s.lastTxID = lastTxID
                }
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
                s.bufferBytes = 0
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
            case .failBuffered(let items, let failure):
                for item in items { item.waiter(.failure(failure)) }
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
        // The floor as accepted (it may run ahead of what is durable: a floor only has to be high enough).
        next.maxTxID = max(info.maxTxID, state.withLock { s in s.txidFloor == .max ? s.lastTxID : s.txidFloor })
        let segment = LogSegment(sequence: next.lastSegment, ledger: ledger.id, firstTxID: firstTxID,
                                 startSequenceID: startSequenceID, creationTime: Namespace.now)
        let segmentKey = LogKeys.segment(name, segment.sequence)
        let transaction = Transaction(
            checks: [.init(key: LogKeys.info(name), version: infoVersion), .init(key: segmentKey, version: .absent),
                     // Only the lock's holder may start a segment: a writer whose lease ran out loses here.
                     .init(key: lock.key, version: lock.version)],
            operations: [.put(key: LogKeys.info(name), value: LogInfoCodec.encode(next), lease: nil),
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
        let (ledger, segment, last, records, endOfStream) = state.withLock { s in
            (s.ledger!, s.segment!, (s.lastEntry, s.lastSlot, s.lastTxID), s.nextPosition, s.endOfStream)
        }
        let closed = try await ledger.close()
        guard closed.lastEntry.rawValue == last.0 else {
            throw LogError.damaged(name, "segment \(segment.sequence) ends at entry \(last.0) but its ledger closed at \(closed.lastEntry)")
        }
        var done = segment
        done.state = .completed
        (done.lastEntry, done.lastSlot, done.lastTxID) = last
        done.recordCount = records
        done.completionTime = Namespace.now
        done.endOfStream = endOfStream
        // A truncation inside this segment may arrive while its record is written: write until it is in.
        while true {
            let (version, minActive) = state.withLock { s in (s.segmentVersion, s.pendingMinActive) }
            if let minActive, minActive.segment == segment.sequence { done.truncation = .partiallyTruncated(minActive: minActive) }
            let key = LogKeys.segment(name, segment.sequence)
            let revision = try await store.commit(Transaction(
                checks: [.init(key: key, version: version), .init(key: lock.key, version: lock.version)],
                operations: [.put(key: key, value: LogSegmentCodec.encode(done), lease: nil)]))
            let settled = state.withLock { s -> Bool in
                s.segmentVersion = Version(revision)
                return s.pendingMinActive == minActive
            }
            if settled { break }
        }
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
    /// moves forward, and never touches data after `dlsn`. Inside this writer's open segment it is recorded when
    /// the segment is completed.
    public func truncate(before dlsn: DLSN) async throws {
        if dlsn > DLSN(segment: dlsn.segment, entry: 0, slot: 0) {
            state.withLock { s in
                guard s.segment?.sequence == dlsn.segment, s.phase == .open || s.phase == .completing else { return }
                s.pendingMinActive = max(s.pendingMinActive ?? dlsn, dlsn)
            }
        }
        for (segment, _) in try await namespace.segments(name) where segment.sequence <= dlsn.segment {
            try await truncate(segment.sequence, before: dlsn)
        }
    }

    /// Truncates one completed segment by compare-and-set, reading it again after a lost race (retention may
    /// have deleted it: then there is nothing left to do).
    private func truncate(_ sequence: Int64, before dlsn: DLSN) async throws {
        let key = LogKeys.segment(name, sequence)
        for _ in 0..<8 {
            guard let item = try await store.get(key) else { return }
            let segment: LogSegment
            do { segment = try LogSegmentCodec.decode(item.value) } catch { throw LogError.damaged(name, "\(key): \(error)") }
            guard segment.state == .completed else { return }
            var changed = segment
            if sequence < dlsn.segment {
                guard segment.truncation != .truncated else { return }
                changed.truncation = .truncated
            } else {
                guard dlsn > DLSN(segment: sequence, entry: 0, slot: 0) else { return }
                switch segment.truncation {
                case .truncated: return
                case .partiallyTruncated(let earlier) where earlier >= dlsn: return
                default: changed.truncation = .partiallyTruncated(minActive: dlsn)
                }
            }
            do {
                _ = try await store.put(key, value: LogSegmentCodec.encode(changed), ifVersion: item.version)
                return
            } catch MetadataError.versionConflict {
                continue
            }
        }
        throw LogError.busy(name, "segment \(sequence) kept changing while it was being truncated; try again")
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

    /// Seals the log: writes an end-of-stream marker after every record taken so far (later writes are refused
    /// from this call on), completes the segment and records the seal, so no writer can append again and
    /// readers end there. Returns the marker's DLSN.
    @discardableResult
    public func markEndOfStream() async throws -> DLSN {
        let marker = RecordBatch.Record(flags: RecordBatch.Record.control | RecordBatch.Record.endOfStream,
                                        txid: Int64.max, payload: [])
        let dlsn = try await enqueueEndOfStream(marker)
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
