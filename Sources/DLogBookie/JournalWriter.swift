import Foundation
import DLogIO
import DLogWire

/// What one step of a journal's writer did, and what its driver should do next.
public enum JournalStep: Equatable, Sendable {
    /// It did something: step again.
    case busy
    /// Nothing to do until records are queued (or until `deadline`, when a batch is waiting to fill).
    case idle(until: ContinuousClock.Instant?)
    /// It has no free file and asked for a checkpoint: step again once a release moved `releasedBelow` past
    /// `seen` (or after a while, to ask again).
    case waitingForFile(seen: UInt64)
    /// Stopped with nothing left to write, or failed (`failure` says why): no more steps.
    case ended
}

/// The journal's writer: builds batches from the queue, writes and syncs them through the engine, and
/// completes their records, one `step` at a time, on the journal's own thread (`run`) or its driver's. Owns
/// the engine, the files and the buffers; nothing else touches them.
final class JournalWriter {
    private struct InFlight {
        var token: UInt64
        var records: [JournalRecord]
        var completions: [JournalCompletion]
        var end: JournalPosition
        var lastSeq: UInt64
        var bytes: Int
        var started: ContinuousClock.Instant
    }

    private let journal: Journal
    private let directory: JournalDirectory
    private let sink: any JournalSink
    private var policy: GroupCommitPolicy
    private var engine: (any WriteSyncEngine)!
    private var files: [Int: any DiskFile] = [:]
    /// Slot files that exist, with the file number in their header (nil: never used or header torn).
    private var slotNumbers: [Int: UInt64?] = [:]
    /// Set once creating a journal file found the disk full: no more are tried until the next start.
    private var growthRefused = false
    private var currentSlot = -1
    private var currentNumber: UInt64 = 0
    private var writeOffset = 0
    private var previousEnd: JournalPosition
    private var nextSeq: UInt64
    private var durableThrough: UInt64
    private var buffers: [AlignedBuffer]
    private var building = 0
    private var batchRecords: [JournalRecord] = []
    private var batchCompletions: [JournalCompletion] = []
    private var batchFirstSeq: UInt64
    private var inFlight: [InFlight] = []
    private var nextToken: UInt64 = 1
    private var lastCompletion: ContinuousClock.Instant? = nil
    private static let batchHeaderBytes = JournalFormat.recordHeaderBytes + JournalFormat.batchPayloadBytes

    init(journal: Journal, sink: any JournalSink, resumeAfter: JournalPosition) {
        self.journal = journal
        self.directory = journal.directory
        self.sink = sink
        let config = journal.configuration
        policy = GroupCommitPolicy(config.policy)
        previousEnd = resumeAfter
        nextSeq = resumeAfter.nextSeq
        durableThrough = resumeAfter.nextSeq &- 1
        batchFirstSeq = resumeAfter.nextSeq
        let capacity = (config.policy.bufferedBytesMax + config.recordBytesMax + JournalFormat.recordHeaderBytes
                        + Self.batchHeaderBytes + 2 * JournalFormat.alignment) / JournalFormat.alignment
                        * JournalFormat.alignment
        buffers = (0...config.policy.maxInFlight).map { _ in AlignedBuffer(capacity: capacity) }
    }

    typealias Step = JournalStep

    /// Opens the engine and reads the slots' headers. Call once, on the thread that will step the writer.
    func setUp() throws {
        let config = journal.configuration
        engine = try config.makeEngine?() ?? EngineSelector.make(config.engine, syncMode: config.syncMode,
                                                                 maxInFlight: config.policy.maxInFlight)
        // Two fdatasyncs in flight on one file could hand a writeback error to the wrong batch (the
        // kernel reports it once per open file), so only O_DIRECT+RWF_DSYNC writes are pipelined.
        policy = policy.limited(toInFlight: engine.syncMode == .fdatasync ? 1 : engine.maxInFlight)
        journal.shared.withLock {
            $0.stats.engine = engine.name
            $0.stats.syncMode = engine.syncMode.rawValue
        }
        for (slot, header) in try directory.slots() { slotNumbers[slot] = .some(header?.fileNumber) }
        beginBatch()
    }

    /// Runs until stopped, on the journal's own thread; returns the failure that ended it, if any. `ready` runs
    /// once: when the first file is open, when the writer waits for a checkpoint to free one (the bookie's
    /// background work must run for that), or when starting failed.
    func run(ready: @escaping () -> Void) -> String? {
        onReady = ready
        defer { announceReady() }
        do {
            try setUp()
        } catch {
            return fail("\(error)")
        }
        while true {
            switch step(now: .now) {
            case .busy:
                continue
            case .idle(let deadline):
                if !spinForWork() { journal.queue.waitForItems(until: deadline) }
            case .waitingForFile(let seen):
                journal.waitForRelease(after: seen, timeout: 0.1)
            case .ended:
                return failure
            }
        }
    }

    /// Why the writer ended, if it failed.
    private(set) var failure: String? = nil
    /// A batch whose file was full when it was flushed: it goes out once a new file is open.
    private var flushAfterRoll: GroupCommitPolicy.Trigger? = nil
    private var ended = false

    /// One piece of the writer's work at `now`: open the first file, finish a flush that waited for a file,
    /// take queued records, flush a batch, or complete one. Never blocks except on the disk. The journal's own
    /// thread steps it in `run`; a driver with `Journal.Configuration.writerThread` off steps it itself.
    func step(now: ContinuousClock.Instant) -> Step {
        guard !ended else { return .ended }
        do {
            if currentSlot < 0 || flushAfterRoll != nil {
                if case .wait(let seen) = try roll() { return .waitingForFile(seen: seen) }
                announceReady()
                if let trigger = flushAfterRoll {
                    flushAfterRoll = nil
                    try submit(trigger)
                }
                return .busy
            }
            let stopping = journal.shared.withLock { $0.stopping }
            if stopping && policy.pendingRecords == 0 && inFlight.isEmpty && journal.queue.isEmpty {
                ended = true
                return .ended
            }
            let bufferFull = drain(now: now)
            let queueEmpty = journal.queue.isEmpty
            switch policy.next(now: now, queueEmpty: queueEmpty || stopping, bufferFull: bufferFull) {
            case .flush(let trigger):
                return try flush(trigger)
            case .awaitCompletion:
                try completeOldest()
                return .busy
            case .waitForWork(let deadline):
                return stopping ? .busy : .idle(until: deadline)
            }
        } catch JournalError.stopped {
            // Stopped while waiting for a free file: what is queued was never acknowledged; say so.
            refuseAll(.stopped)
            ended = true
            return .ended
        } catch {
            failure = fail("\(error)")
            ended = true
            return .ended
        }
    }

    private var onReady: (() -> Void)?

    private func announceReady() {
        onReady?()
        onReady = nil
    }

    /// Right after a batch completes the next add often follows within microseconds (a client answering
    /// its acknowledgement): polling briefly then saves a sleep and a wake-up on the latency path. Bounded
    /// by `spinMax`, and only after recent activity, so an idle journal costs nothing. It pays only where a core
    /// is free for it: on a machine whose cores are all busy it takes one from the threads that bring the adds.
    private func spinForWork() -> Bool {
        let spin = journal.configuration.spinMax
        guard spin > .zero, let last = lastCompletion, ContinuousClock.now - last < .milliseconds(1) else { return false }
        let until = ContinuousClock.now + spin
        var found = false
        while ContinuousClock.now < until {
            if !journal.queue.isEmpty {
                found = true
                break
            }
        }
        journal.shared.withLock {
            $0.stats.spins += 1
            if found { $0.stats.spinsThatFoundWork += 1 }
        }
        return found
    }

    /// Moves queued records into the batch being built. Returns true when a record is left waiting because
    /// it does not fit.
    ///
    /// A batch never outgrows what a fresh file holds: the buffer has room for a group's bytes plus the largest
    /// record, and with many records queued at once (the writer came late) it took them all, into a batch that
    /// rolling could not make fit, so a file grew past `journal_file_bytes`. A lone record too large for any
    /// file still goes, alone, so that nothing waits forever.
    private func drain(now: ContinuousClock.Instant) -> Bool {
        let buffer = buffers[building]
        let limit = min(buffer.capacity, directory.fileBytes - JournalFormat.headerBytes)
        var room = limit - buffer.count - JournalFormat.alignment
        var alone = batchRecords.isEmpty
        var stoppedForRoom = false
        let first = batchRecords.count
        var oldestQueued: UInt64?
        // The queue hands each record over, and it goes into the batch, encoded there in place. Copied from an
        // array `drain` returned, and bound to a local to encode, each cost a retain and a release of every
        // reference it holds, twice.
        journal.queue.drain(while: { pending in
            let need = pending.record.encodedBytes
            guard need <= room || (alone && need <= buffer.capacity - buffer.count - JournalFormat.alignment) else {
                stoppedForRoom = true
                return false
            }
            alone = false
            room -= need
            return true
        }, into: { pending in
            // Its parts are moved out, not copied: reading `pending.record` and `pending.completion` retained
            // what they hold and releasing `pending` let go of it again, from this thread, on memory an event
            // loop had just written.
            var pending = pending
            if oldestQueued == nil { oldestQueued = pending.queued }
            if let completion = pending.completion.take() { batchCompletions.append(completion) }
            var record = JournalRecord(kind: .add, payload: [])
            swap(&record, &pending.record)
            batchRecords.append(record)
        })
        // One observation per take, the oldest record's wait (the queue is first in, first out): the longest any
        // record taken waited. One per record cost the writer's thread a histogram's lock per add.
        if let oldestQueued { journal.meters.taken(queued: oldestQueued, at: JournalMeters.now) }
        for i in first ..< batchRecords.count {
            batchRecords[i].payload.withUnsafeBytes { payload in
                buffer.count += JournalRecordCodec.write(kind: batchRecords[i].kind, seq: nextSeq, payload: payload,
                                                         into: UnsafeMutableRawBufferPointer(start: buffer.base,
                                                                                             count: buffer.capacity),
                                                         at: buffer.count)
            }
            nextSeq += 1
            policy.added(bytes: batchRecords[i].encodedBytes, at: now)
        }
        return stoppedForRoom
    }

    private func beginBatch() {
        let buffer = buffers[building]
        buffer.reset()
        buffer.count = Self.batchHeaderBytes
        batchFirstSeq = nextSeq
    }

    /// Flushes the batch being built: pads it, and submits it to the current file, or to a new one when it does
    /// not fit (after completing what is in flight in the old one). With no free file it waits, padded, and
    /// goes out once a file is free (`flushAfterRoll`); nothing is added to it meanwhile.
    private func flush(_ trigger: GroupCommitPolicy.Trigger) throws -> Step {
        let buffer = buffers[building]
        buffer.padToAlignment()
        if writeOffset + buffer.count > directory.fileBytes {
            while !inFlight.isEmpty { try completeOldest() }
            if case .wait(let seen) = try roll() {
                flushAfterRoll = trigger
                return .waitingForFile(seen: seen)
            }
        }
        try submit(trigger)
        return .busy
    }

    /// Writes the padded batch being built at the end of the current file, and starts the next batch.
    private func submit(_ trigger: GroupCommitPolicy.Trigger) throws {
        let buffer = buffers[building]
        let info = BatchInfo(batchBytes: buffer.count, recordCount: batchRecords.count,
                             durableThrough: durableThrough)
        info.encode().withUnsafeBytes { payload in
            _ = JournalRecordCodec.write(kind: .batch, seq: batchFirstSeq, payload: payload,
                                         into: UnsafeMutableRawBufferPointer(start: buffer.base, count: buffer.capacity),
                                         at: 0)
        }
        let token = nextToken
        nextToken += 1
        let file = files[currentSlot]!
        let started = ContinuousClock.now
        try engine.submit(file: file, buffer: buffer.base, count: buffer.count, offset: Int64(writeOffset),
                          token: token)
        writeOffset += buffer.count
        inFlight.append(InFlight(token: token, records: batchRecords, completions: batchCompletions,
                                 end: JournalPosition(fileNumber: currentNumber, offset: Int64(writeOffset),
                                                      nextSeq: nextSeq),
                                 lastSeq: nextSeq - 1, bytes: buffer.count, started: started))
        policy.flushed()
        journal.shared.withLock { $0.stats.recordFlush(trigger) }
        batchRecords = []
        batchCompletions = []
        building = (building + 1) % buffers.count
        beginBatch()
    }

    private func completeOldest() throws {
        let token = try engine.awaitCompletion()
        let done = inFlight.removeFirst()
        precondition(done.token == token, "journal completions out of order")
        policy.completed()
        lastCompletion = .now
        durableThrough = done.lastSeq
        let latency = ContinuousClock.now - done.started
        journal.shared.withLock { $0.stats.recordSync(records: done.records.count, bytes: done.bytes, latency: latency) }
        sink.journalDidSync(done.records, journal: journal.index, through: done.end)
        JournalCompletion.succeed(done.completions)
        // Metrics after the answers: they never delay an acknowledgement.
        journal.meters.synced(records: done.records.count, bytes: done.bytes, latency: latency)
    }

    private enum Roll {
        case rolled
        /// No free file: wait for a release past `seen`.
        case wait(seen: UInt64)
    }

    /// Starts a new file: takes a free slot, writes its header naming where the previous file ends, syncs it.
    private func roll() throws -> Roll {
        let slot: Int
        switch try freeSlot() {
        case .slot(let free): slot = free
        case .wait(let seen): return .wait(seen: seen)
        }
        // Records of the batch being built already have sequence numbers; the new file starts with them.
        let previous = currentSlot >= 0
            ? JournalPosition(fileNumber: currentNumber, offset: Int64(writeOffset), nextSeq: batchFirstSeq)
            : previousEnd
        let number = max(slotNumbers.values.compactMap { $0 }.max() ?? 0, previous.fileNumber) + 1
        let header = JournalFileHeader(fileNumber: number, firstSeq: batchFirstSeq,
                                       previousFileNumber: previous.fileNumber,
                                       previousEndOffset: previous.offset)
        let file = try openSlot(slot)
        let block = AlignedBuffer(capacity: JournalFormat.headerBytes)
        block.count = JournalFormat.headerBytes
        header.encode(into: block.bytes)
        try file.write(UnsafeRawBufferPointer(block.bytes), at: 0)
        try file.dataSync()
        slotNumbers[slot] = number
        currentSlot = slot
        currentNumber = number
        writeOffset = JournalFormat.headerBytes
        if freeFilesLeft * 2 < directory.filesMax { sink.journalNeedsCheckpoint(journal: journal.index) }
        return .rolled
    }

    /// Files a later roll could take without waiting for a checkpoint: free slots and slots still to create.
    /// Once fewer than half the files are left, each roll asks for a checkpoint. Asking only when none is left
    /// held every add for the whole checkpoint: with a journal no bigger than the write cache (a standalone's),
    /// that was a stall of 100-250 ms every few seconds under load.
    private var freeFilesLeft: Int {
        let released = journal.shared.withLock { $0.releasedBelow }
        let reusable = slotNumbers.filter { slot, number in slot != currentSlot && (number.map { $0 < released } ?? true) }.count
        return reusable + (growthRefused ? 0 : max(0, directory.filesMax - slotNumbers.count))
    }

    private func openSlot(_ slot: Int) throws(SystemError) -> any DiskFile {
        if let f = files[slot] { return f }
        let f = try directory.disk.open(directory.slotPath(slot), journal.configuration.syncMode.fileOptions)
        files[slot] = f
        return f
    }

    private enum FreeSlot {
        case slot(Int)
        /// None: a checkpoint was asked for; `seen` is the released mark that freed nothing.
        case wait(UInt64)
    }

    /// A slot whose file no checkpoint needs; creates one while under the limit; otherwise asks for a
    /// checkpoint and says to wait (`isWaitingForFile` is true until a slot is found). Throws `stopped` when the
    /// journal stops meanwhile.
    private func freeSlot() throws -> FreeSlot {
        while true {
            let released = journal.shared.withLock { $0.releasedBelow }
            if let slot = slotNumbers.keys.sorted().first(where: { slot in
                slot != currentSlot && (slotNumbers[slot]!.map { $0 < released } ?? true)
            }) {
                journal.shared.withLock { $0.waitingForFile = false }
                return .slot(slot)
            }
            if slotNumbers.count < directory.filesMax && !growthRefused {
                let slot = (slotNumbers.keys.max() ?? -1) + 1
                let created = Result { () throws(SystemError) in try directory.create(slot: slot) }
                if case .failure(let error) = created {
                    // Nothing of this file was in use: make do with the files there are, which checkpoints
                    // free in turn, rather than fail the journal.
                    guard error.errno == ENOSPC && !slotNumbers.isEmpty else { throw error }
                    growthRefused = true
                    sink.journalOutOfSpace(journal: journal.index, error: "\(error)")
                    continue
                }
                slotNumbers[slot] = .some(nil)
                journal.shared.withLock { $0.waitingForFile = false }
                return .slot(slot)
            }
            if journal.shared.withLock({ $0.stopping }) { throw JournalError.stopped }
            journal.shared.withLock {
                $0.stats.waitsForFreeFile += 1
                $0.waitingForFile = true
            }
            sink.journalNeedsCheckpoint(journal: journal.index)
            announceReady()
            return .wait(released)
        }
    }

    /// Ends the journal: the failed batch and everything after it is refused, never retried.
    func fail(_ why: String) -> String {
        journal.shared.withLock {
            $0.failure = why
            $0.stats.failed = why
        }
        refuseAll(.failed(why))
        return why
    }

    /// Completes everything not yet acknowledged with `error`; the queue refuses later offers.
    private func refuseAll(_ error: JournalError) {
        journal.queue.close()
        for batch in inFlight { for c in batch.completions { c(.failure(error)) } }
        inFlight = []
        for c in batchCompletions { c(.failure(error)) }
        batchCompletions = []
        for pending in journal.queue.drain(while: { _ in true }) { pending.completion?(.failure(error)) }
    }
}
