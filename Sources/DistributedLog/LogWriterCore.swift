import DLogMetadata
import DLogWire
import DequeModule

/// The decisions of a log's single writer as a value: `handle(event)` returns the actions to take, and does no
/// I/O, reads no clock and takes no lock. `LogWriter` is its driver: it feeds the events (writes, the ledger's
/// confirmations, the results of metadata commits, a lost lease) one at a time and runs the actions. Tests
/// drive it with seeded random events and check its invariants (LogWriterCoreTests).
///
/// The life of a segment: `idle` → records wait → `starting` (the driver creates a ledger and commits the
/// segment's record) → `open` (entries go out, at most `entriesInFlightMax` at a time; records gather behind
/// them into the next entry) → a roll (by size, age or end of stream) or a close waits until nothing is in
/// flight → `completing` (the driver closes the ledger and commits the completed record in one transaction,
/// and writes the record again if a truncation arrived meanwhile) → `idle`. The first failure ends the writer: every record it holds fails with
/// it, and so does every later write.
///
/// Generic over the ledger handle it carries for the driver, the waiter of a record, and the waiter of a flush
/// or close, so tests need no ledger and no continuations.
struct LogWriterCore<Ledger, Waiter, Signal> {
    struct Limits {
        var entriesInFlightMax: Int
        var entryBytesMax: Int
        var bufferedBytesMax: Int
        var segmentBytesMax: Int64
        var segmentAgeMax: Duration
        var compression: RecordBatch.Codec
    }

    enum Phase: Equatable { case idle, starting, open, completing }

    /// A record to take, with its waiter; without a txid, the writer assigns one (see `write`).
    struct Incoming {
        var txid: Int64?
        var payload: [UInt8]
        var waiter: Waiter
    }

    enum Event {
        /// Records of one call or several, in order: each call's records are taken all or none, and whatever is
        /// taken goes out together (one entry while fewer than the limit are in flight), not the first call alone.
        /// `now` is the wall clock in milliseconds (for assigned txids).
        case write([[Incoming]], now: Int64)
        /// The end-of-stream marker: the last record; every later write is refused.
        case endOfStream(RecordBatch.Record, Waiter)
        /// The driver created the segment's ledger and committed its record (and the log's) at `version`.
        case segmentStarted(LogSegment, Ledger, info: LogInfo, version: Version, at: ContinuousClock.Instant)
        /// The segment's ledger confirmed the entry sent as `index` of segment `sequence`.
        case entryConfirmed(sequence: Int64, index: Int64, entry: EntryID, at: ContinuousClock.Instant)
        /// The completed record `record` was committed at `version` (with the ledger's close, the first time).
        case segmentRecordWritten(LogSegment, version: Version)
        /// A truncation point: if it lies inside the open segment, the completed record carries it.
        case truncate(before: DLSN)
        /// Resolves once every record taken so far is confirmed (or the writer failed).
        case flush(Signal)
        /// Flushes, completes the segment, then refuses every later write; resolves when done.
        case close(Signal)
        /// A step of the driver failed (a ledger, a metadata commit), or the lease is gone: the writer ends.
        case failed(LogError)
    }

    enum Action {
        case startSegment(info: LogInfo, infoVersion: Version, segment: LogSegment)
        /// Hand `payload` to `ledger` now, in the order the actions come (entries keep the records' order).
        /// `records`: how many records the entry carries (for metrics: the batching achieved).
        case send(Ledger, payload: [UInt8], sequence: Int64, index: Int64, records: Int)
        case acknowledge([(Waiter, DLSN)])
        case fail([Waiter], LogError)
        /// Flush or close waiters, resolved: with nil, done; otherwise with the writer's failure.
        case settle([Signal], LogError?)
        /// Close `ledger` and, in the same transaction, commit the segment's completed record (its ledger must
        /// have closed at the record's last entry); the driver sets the completion time.
        case completeSegment(Ledger, LogSegment, version: Version)
        /// Write the completed record again (with a truncation that arrived meanwhile).
        case writeSegmentRecord(LogSegment, version: Version)
        /// Old segments may now be deleted (after a roll; off the write path).
        case applyRetention
    }

    /// An entry handed to the ledger and not yet acknowledged.
    struct Sent {
        var index: Int64
        var waiters: [Waiter]
        var lastTxID: Int64
        var endOfStream: Bool
        var confirmed: EntryID?
    }

    let name: String
    let limits: Limits
    private(set) var phase = Phase.idle
    private(set) var info: LogInfo
    private var infoVersion: Version
    private(set) var segment: LogSegment?
    private var segmentVersion = Version.absent
    private var segmentStarted: ContinuousClock.Instant?
    private var ledger: Ledger?
    private var buffer: Deque<(record: RecordBatch.Record, waiter: Waiter)> = []
    private(set) var bufferBytes = 0
    private var inFlight: Deque<Sent> = []
    /// Entries sent in this segment (the next one's index), and records (the next one's position).
    private var nextIndex: Int64 = 0
    private var nextPosition: Int64 = 0
    private var segmentBytes: Int64 = 0
    /// The last acknowledged record of the segment: entry, slot, txid.
    private var last: (entry: Int64, slot: Int64, txid: Int64) = (-1, -1, -1)
    /// The highest txid taken: later records may not go below it (`.max` once sealed).
    private(set) var txidFloor: Int64
    private var nextStartSequenceID: Int64
    private var rollWanted = false
    private var closing = false
    private var endOfStream = false
    private(set) var failure: LogError?
    private var pendingMinActive: DLSN?
    private var flushSignals: [Signal] = []
    private var closeSignals: [Signal] = []

    init(name: String, limits: Limits, info: LogInfo, infoVersion: Version, txidFloor: Int64, nextStartSequenceID: Int64) {
        precondition(limits.entriesInFlightMax > 0 && limits.entryBytesMax > RecordBatch.headerBytes)
        self.name = name
        self.limits = limits
        self.info = info
        self.infoVersion = infoVersion
        self.txidFloor = txidFloor
        self.nextStartSequenceID = nextStartSequenceID
    }

    /// Entries handed to the ledger and not yet acknowledged.
    var entriesInFlight: Int { inFlight.count }
    /// Records taken and not yet sent.
    var recordsBuffered: Int { buffer.count }

    mutating func handle(_ event: Event) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .write(let calls, let now): for records in calls { take(records, now: now, &actions) }
        case .endOfStream(let marker, let waiter): takeEndOfStream(marker, waiter, &actions)
        case .segmentStarted(let segment, let ledger, let info, let version, let at):
            started(segment, ledger, info: info, version: version, at: at)
        case .entryConfirmed(let sequence, let index, let entry, let at):
            confirmed(sequence: sequence, index: index, entry: entry, at: at, &actions)
        case .segmentRecordWritten(let record, let version): recordWritten(record, version: version, &actions)
        case .truncate(let dlsn):
            if let segment, segment.sequence == dlsn.segment, phase == .open || phase == .completing,
               dlsn > DLSN(segment: dlsn.segment, entry: 0, slot: 0) {
                pendingMinActive = max(pendingMinActive ?? dlsn, dlsn)
            }
        case .flush(let signal): flushSignals.append(signal)
        case .close(let signal):
            closing = true
            closeSignals.append(signal)
        case .failed(let error): fail(error, &actions)
        }
        pump(&actions)
        return actions
    }

    // MARK: Taking records

    private mutating func take(_ records: [Incoming], now: Int64, _ actions: inout [Action]) {
        if let refused = refusal() { return actions.append(.fail(records.map(\.waiter), refused)) }
        var floor = txidFloor
        var taken: [RecordBatch.Record] = []
        for record in records {
            let txid = record.txid ?? max(now, floor)
            guard txid >= 0, txid >= floor else {
                return actions.append(.fail(records.map(\.waiter), .txidOutOfOrder(name, txid: txid, last: floor)))
            }
            floor = txid
            taken.append(RecordBatch.Record(txid: txid, payload: record.payload))
        }
        let bytes = taken.reduce(0) { $0 + $1.encodedBytes }
        guard bufferBytes + bytes <= limits.bufferedBytesMax || buffer.isEmpty else {
            return actions.append(.fail(records.map(\.waiter), .busy(name,
                "\(bufferBytes) bytes already wait to be written (the writer's limit is \(limits.bufferedBytesMax)); retry once some are confirmed")))
        }
        txidFloor = floor
        for (record, incoming) in zip(taken, records) { buffer.append((record, incoming.waiter)) }
        bufferBytes += bytes
    }

    private mutating func takeEndOfStream(_ marker: RecordBatch.Record, _ waiter: Waiter, _ actions: inout [Action]) {
        precondition(marker.isEndOfStream)
        if let refused = refusal() { return actions.append(.fail([waiter], refused)) }
        buffer.append((marker, waiter))
        bufferBytes += marker.encodedBytes
        endOfStream = true
        txidFloor = .max
    }

    /// Why no record can be taken now, or nil.
    private func refusal() -> LogError? {
        if let failure { return failure }
        if endOfStream { return .endOfStream(name) }
        if closing { return .writerClosed(name) }
        return nil
    }

    // MARK: Moving on

    /// Moves on as far as possible without waiting: starts a segment when records wait and none is open, sends
    /// entries while fewer than the limit are in flight, completes the segment for a roll or a close once
    /// nothing is in flight, and resolves the flushes and closes that are done.
    private mutating func pump(_ actions: inout [Action]) {
        if failure == nil {
            switch phase {
            case .idle:
                if let first = buffer.first {
                    phase = .starting
                    actions.append(startPlan(firstTxID: first.record.txid))
                } else if closing {
                    failure = .writerClosed(name)
                    actions.append(.settle(closeSignals, nil))
                    closeSignals.removeAll()
                }
            case .open:
                while !rollWanted, !buffer.isEmpty, inFlight.count < limits.entriesInFlightMax { transmit(&actions) }
                if inFlight.isEmpty, rollWanted || closing && buffer.isEmpty {
                    phase = .completing
                    actions.append(.completeSegment(ledger!, completedRecord(segment!), version: segmentVersion))
                }
            case .starting, .completing:
                break
            }
        }
        let quiet = buffer.isEmpty && inFlight.isEmpty && (phase == .idle || phase == .open)
        if quiet || failure != nil, !flushSignals.isEmpty {
            actions.append(.settle(flushSignals, failure))
            flushSignals.removeAll()
        }
        if failure != nil, !closeSignals.isEmpty {
            actions.append(.settle(closeSignals, failure))
            closeSignals.removeAll()
        }
    }

    private func startPlan(firstTxID: Int64) -> Action {
        var next = info
        next.lastSegment += 1
        // The floor as taken (it may run ahead of what is durable: a floor only has to be high enough).
        next.maxTxID = max(info.maxTxID, txidFloor == .max ? last.txid : txidFloor)
        let segment = LogSegment(sequence: next.lastSegment, ledger: LedgerID(0), firstTxID: firstTxID,
                                 startSequenceID: nextStartSequenceID, creationTime: 0)
        return .startSegment(info: next, infoVersion: infoVersion, segment: segment)
    }

    /// Sends the records at the front of the buffer as one entry, up to `entryBytesMax`.
    private mutating func transmit(_ actions: inout [Action]) {
        var records: [RecordBatch.Record] = []
        var waiters: [Waiter] = []
        var bytes = RecordBatch.headerBytes
        while let item = buffer.first, records.isEmpty || bytes + item.record.encodedBytes <= limits.entryBytesMax {
            buffer.removeFirst()
            bytes += item.record.encodedBytes
            bufferBytes -= item.record.encodedBytes
            records.append(item.record)
            waiters.append(item.waiter)
        }
        let payload = RecordBatch.encode(records, firstPosition: nextPosition, codec: limits.compression)
        inFlight.append(Sent(index: nextIndex, waiters: waiters, lastTxID: records.last!.txid,
                             endOfStream: records.last!.isEndOfStream))
        actions.append(.send(ledger!, payload: payload, sequence: segment!.sequence, index: nextIndex, records: records.count))
        nextIndex += 1
        nextPosition += Int64(records.count)
        segmentBytes += Int64(payload.count)
    }

    // MARK: Results of the driver's steps

    private mutating func started(_ segment: LogSegment, _ ledger: Ledger, info: LogInfo, version: Version,
                                  at: ContinuousClock.Instant) {
        // Started while failing (the lease ran out meanwhile): the segment is left in progress, for the next
        // writer to recover.
        guard phase == .starting, failure == nil else { return }
        precondition(segment.sequence == info.lastSegment && segment.state == .inProgress)
        self.info = info
        infoVersion = version
        self.segment = segment
        segmentVersion = version
        segmentStarted = at
        self.ledger = ledger
        (nextIndex, nextPosition, segmentBytes) = (0, 0, 0)
        last = (-1, -1, last.txid)
        phase = .open
    }

    private mutating func confirmed(sequence: Int64, index: Int64, entry: EntryID, at: ContinuousClock.Instant,
                                    _ actions: inout [Action]) {
        // A confirmation after a failure, or of an earlier segment, changes nothing.
        guard failure == nil, segment?.sequence == sequence, let head = inFlight.first?.index, index >= head,
              index - head < inFlight.count else { return }
        guard entry.rawValue == index else {
            return fail(.damaged(name, "segment \(sequence): the ledger confirmed entry \(entry) for the entry sent as \(index)"), &actions)
        }
        inFlight[Int(index - head)].confirmed = entry
        // Confirmations may be handled out of order (their callbacks run on different threads); records are
        // acknowledged in order, so a DLSN is never acknowledged before an earlier one.
        var acknowledged: [(Waiter, DLSN)] = []
        while let done = inFlight.first, let entry = done.confirmed {
            inFlight.removeFirst()
            for (slot, waiter) in done.waiters.enumerated() {
                acknowledged.append((waiter, DLSN(segment: sequence, entry: entry.rawValue, slot: Int64(slot))))
            }
            last = (entry.rawValue, Int64(done.waiters.count - 1), done.lastTxID)
            if done.endOfStream || segmentBytes >= limits.segmentBytesMax
                || segmentStarted.map({ at - $0 >= limits.segmentAgeMax }) == true {
                rollWanted = true
            }
        }
        if !acknowledged.isEmpty { actions.append(.acknowledge(acknowledged)) }
    }

    /// The segment's completed record, with the truncation asked for so far.
    private func completedRecord(_ segment: LogSegment) -> LogSegment {
        var done = segment
        done.state = .completed
        (done.lastEntry, done.lastSlot, done.lastTxID) = last
        done.recordCount = nextPosition
        done.endOfStream = endOfStream && buffer.isEmpty
        if let pendingMinActive, pendingMinActive.segment == segment.sequence {
            done.truncation = .partiallyTruncated(minActive: pendingMinActive)
        }
        return done
    }

    private mutating func recordWritten(_ record: LogSegment, version: Version, _ actions: inout [Action]) {
        guard failure == nil, phase == .completing, let segment, segment.sequence == record.sequence else { return }
        segmentVersion = version
        let wanted = completedRecord(segment)
        // A truncation arrived while the record was written: write it again, with it.
        guard wanted.truncation == record.truncation else {
            return actions.append(.writeSegmentRecord(wanted, version: version))
        }
        info.maxTxID = max(info.maxTxID, record.lastTxID)
        nextStartSequenceID = segment.startSequenceID + nextPosition
        self.segment = nil
        ledger = nil
        segmentStarted = nil
        pendingMinActive = nil
        rollWanted = false
        phase = .idle
        if !closing { actions.append(.applyRetention) }
    }

    /// Ends the writer with `error` (the first failure stays): every record held fails with it.
    private mutating func fail(_ error: LogError, _ actions: inout [Action]) {
        if failure == nil { failure = error }
        let waiters = inFlight.flatMap(\.waiters) + buffer.map(\.waiter)
        inFlight.removeAll()
        buffer.removeAll()
        bufferBytes = 0
        if !waiters.isEmpty { actions.append(.fail(waiters, failure!)) }
    }
}

extension LogWriterCore: Sendable where Ledger: Sendable, Waiter: Sendable, Signal: Sendable {}
extension LogWriterCore.Limits: Sendable {}
extension LogWriterCore.Incoming: Sendable where Waiter: Sendable {}
extension LogWriterCore.Sent: Sendable where Waiter: Sendable {}
extension LogWriterCore.Event: Sendable where Ledger: Sendable, Waiter: Sendable, Signal: Sendable {}
extension LogWriterCore.Action: Sendable where Ledger: Sendable, Waiter: Sendable, Signal: Sendable {}
