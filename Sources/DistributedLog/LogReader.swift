import DLogLedger
import DLogMetadata
import DLogWire

/// Reads a log in order from a position, crossing segments, and tails it: once it has read everything, the
/// next read waits for the writer (a long poll on the in-progress segment's LAC, and the segment list for a
/// roll). Never delivers a record twice or out of order, never past a segment's LAC, skips truncated data and
/// control records, and ends with `endOfStream` after the marker of a sealed log. Not for concurrent use by
/// several tasks at once: one reader, one consumer.
public actor LogReader {
    public enum Position: Hashable, Sendable {
        /// The first record at or after this DLSN.
        case dlsn(DLSN)
        /// The first record with a txid at or above this one.
        case txid(Int64)
    }

    public nonisolated let name: String
    let namespace: Namespace
    private var start: Position?
    /// The position of the next record to deliver (records before it were delivered or skipped).
    private var cursor = DLSN.initial
    private var ready: [LogRecordWithDLSN] = []
    private var readyIndex = 0
    private var segments: [LogSegment] = []
    private var current: (segment: LogSegment, reader: LedgerReader)?
    private var endOfStream = false
    /// Records below this txid are skipped (positioning by txid, until the first record that reaches it).
    private var txidFloor: Int64?
    /// A reader that failed stays failed: its position may be part-way through an entry.
    private var failure: (any Error)?
    /// Entries read ahead at a time.
    let readAhead = 16

    init(name: String, namespace: Namespace, from position: Position) {
        self.name = name
        self.namespace = namespace
        start = position
    }

    /// The next record; waits for one to be written when the reader has caught up.
    public func readNext() async throws -> LogRecordWithDLSN {
        while readyIndex == ready.count {
            if endOfStream { throw LogError.endOfStream(name) }
            try await fillOrFail()
        }
        readyIndex += 1
        return ready[readyIndex - 1]
    }

    /// Up to `max` records: those ready now, or after waiting at most `wait` for the first one (then empty
    /// when none came).
    public func readBulk(max: Int, wait: Duration = .zero) async throws -> [LogRecordWithDLSN] {
        precondition(max >= 1, "readBulk needs max ≥ 1")
        if readyIndex == ready.count {
            if endOfStream { throw LogError.endOfStream(name) }
            let deadline = ContinuousClock.now + wait
            // At least one attempt, even without a wait: what is already written is returned at once.
            repeat {
                let left = Swift.max(deadline - ContinuousClock.now, Duration.zero)
                try await fillOrFail(pollFor: min(left, namespace.options.readPollTimeout))
            } while readyIndex == ready.count && !endOfStream && ContinuousClock.now < deadline
        }
        let taken = Array(ready[readyIndex..<min(ready.count, readyIndex + max)])
        readyIndex += taken.count
        return taken
    }

    // MARK: Filling

    private func fillOrFail(pollFor: Duration? = nil) async throws {
        if let failure { throw failure }
        do {
            try await fill(pollFor: pollFor)
        } catch {
            failure = error
            ready.removeAll()
            readyIndex = 0
            throw error
        }
    }

    /// Reads the next entries (or waits once for more to be written, at most `pollFor`).
    private func fill(pollFor: Duration? = nil) async throws {
        ready.removeAll(keepingCapacity: true)
        readyIndex = 0
        if let position = start {
            cursor = try await resolve(position)
            start = nil
        }
        guard let segment = try await segmentAtCursor() else {
            if endOfStream { return }
            // Nothing written at or after the cursor yet: wait for the segment list to change.
            try await waitForSegments(timeout: pollFor ?? namespace.options.readPollTimeout)
            return
        }
        let reader: LedgerReader
        do {
            reader = try await ledgerReader(for: segment)
        } catch LogError.ledger(let ledgerName, let error) {
            try await skipIfDeleted(segment, LogError.ledger(ledgerName, error))
            return
        }
        let readable = segment.state == .completed ? segment.lastEntry : reader.lastAddConfirmed.rawValue
        if cursor.entry <= readable {
            let last = min(readable, cursor.entry + Int64(readAhead) - 1)
            let payloads: [[UInt8]]
            do {
                payloads = try await read(reader, segment, from: cursor.entry, through: last)
            } catch LogError.ledger(let ledgerName, let error) {
                try await skipIfDeleted(segment, LogError.ledger(ledgerName, error))
                return
            }
            for (offset, payload) in payloads.enumerated() {
                try deliver(payload, segment: segment, entry: cursor.entry + Int64(offset))
                if endOfStream { break }
            }
            cursor = DLSN(segment: segment.sequence, entry: last + 1, slot: 0)
            return
        }
        if segment.state == .completed || reader.metadata.state == .closed && segmentCompleted(segment) {
            cursor = DLSN(segment: segment.sequence + 1, entry: 0, slot: 0)
            return
        }
        // Caught up with an in-progress segment: wait for its LAC to move, or for it to end.
        let lac = try await reader.waitForLastAddConfirmed(after: EntryID(readable),
                                                           timeout: pollFor ?? namespace.options.readPollTimeout)
        if lac.rawValue <= readable {
            // No progress: the segment may have been completed (a roll, or a new writer's recovery). A closed
            // ledger answers at once, so pause while its segment record catches up.
            if reader.metadata.state == .closed {
                // Its writer closed the ledger; the segment's record is completed next: wait for that change.
                try await waitForSegments(timeout: pollFor ?? namespace.options.readPollTimeout)
            } else {
                segments = try await namespace.segments(name).map(\.segment)
            }
            if let fresh = segments.first(where: { $0.sequence == segment.sequence }) { current = (fresh, reader) }
        }
    }

    /// Reads the segment list, and when it holds nothing new for the cursor, waits (at most `timeout`) for a
    /// change to it through a metadata watch, then reads it again: a roll or a new segment is seen at once,
    /// without polling metadata.
    private func waitForSegments(timeout: Duration) async throws {
        let store = namespace.pool.cluster.store
        let prefix = LogKeys.segments(name)
        let page = try await store.list(prefix: prefix)
        segments = try decodeSegments(page.items)
        if segments.contains(where: { $0.sequence > cursor.segment || ($0.sequence == cursor.segment && $0.state == .completed) }) {
            return
        }
        let watch = store.watch(.prefix(prefix), from: page.revision.next)
        // Whichever comes first, a change or the timeout; neither is waited for after that (a watch need not
        // end promptly when cancelled).
        let (signal, sink) = AsyncStream.makeStream(of: Void.self)
        let watcher = Task {
            var events = watch.makeAsyncIterator()
            _ = try? await events.next()
            sink.yield()
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            sink.yield()
        }
        for await _ in signal { break }
        watcher.cancel()
        timer.cancel()
        segments = try await namespace.segments(name).map(\.segment)
    }

    private func decodeSegments(_ items: [KeyValue]) throws -> [LogSegment] {
        try items.map { item in
            do { return try LogSegmentCodec.decode(item.value) } catch { throw LogError.damaged(name, "segment record \(item.key): \(error)") }
        }
    }

    /// Reading `segment` failed with `error`. If retention deleted the segment meanwhile, skips what was deleted
    /// (as truncated data is skipped); otherwise the error stands.
    private func skipIfDeleted(_ segment: LogSegment, _ error: LogError) async throws {
        current = nil
        segments = try await namespace.segments(name).map(\.segment)
        guard !segments.contains(where: { $0.sequence == segment.sequence }) else { throw error }
        cursor = DLSN(segment: segment.sequence + 1, entry: 0, slot: 0)
    }

    /// Whether the cached segment list says `segment` is completed now (refreshing it once).
    private func segmentCompleted(_ segment: LogSegment) -> Bool {
        segments.first { $0.sequence == segment.sequence }?.state == .completed
    }

    /// The first segment that still holds something at or after the cursor, moving the cursor past truncated
    /// data; nil when there is none yet.
    private func segmentAtCursor() async throws -> LogSegment? {
        if segments.isEmpty || segments.last!.sequence < cursor.segment { segments = try await namespace.segments(name).map(\.segment) }
        if let current, current.segment.sequence == cursor.segment, current.segment.state == .completed {
            return current.segment
        }
        for segment in segments where segment.sequence >= cursor.segment {
            switch segment.truncation {
            case .truncated:
                if segment.endOfStream {
                    endOfStream = true
                    return nil
                }
                continue
            case .partiallyTruncated(let minActive):
                if cursor < minActive { cursor = minActive }
            case .active:
                break
            }
            if segment.sequence > cursor.segment { cursor = DLSN(segment: segment.sequence, entry: 0, slot: 0) }
            if segment.state == .completed, segment.lastEntry < cursor.entry {
                // Read to its end already (or empty): the next one, unless the log was sealed there.
                if segment.endOfStream {
                    endOfStream = true
                    return nil
                }
                cursor = DLSN(segment: segment.sequence + 1, entry: 0, slot: 0)
                continue
            }
            return segment
        }
        return nil
    }

    private func ledgerReader(for segment: LogSegment) async throws -> LedgerReader {
        // A reader opened while the segment was in progress may not know the LAC its completion recorded: then
        // open it again, which reads the closed ledger's end from metadata.
        if let current, current.segment.sequence == segment.sequence,
           segment.state != .completed || current.reader.lastAddConfirmed.rawValue >= segment.lastEntry {
            self.current = (segment, current.reader)
            return current.reader
        }
        do {
            let reader = try await LedgerReader.open(segment.ledger, password: namespace.options.ledgerPassword,
                                                     pool: namespace.pool)
            current = (segment, reader)
            return reader
        } catch let error as LedgerError {
            throw LogError.ledger(name, error)
        }
    }

    private func read(_ reader: LedgerReader, _ segment: LogSegment, from first: Int64, through last: Int64) async throws -> [[UInt8]] {
        do {
            return try await reader.read(from: EntryID(first), through: EntryID(last))
        } catch let error as LedgerError {
            throw LogError.ledger(name, error)
        }
    }

    /// Decodes one entry and queues its records at or after the cursor, skipping control records.
    private func decode(_ payload: [UInt8], _ segment: LogSegment, _ entry: Int64) throws -> RecordBatch.Decoded {
        do {
            return try RecordBatch.decode(payload)
        } catch {
            throw LogError.damaged(name, "segment \(segment.sequence), entry \(entry): \(error)")
        }
    }

    private func deliver(_ payload: [UInt8], segment: LogSegment, entry: Int64) throws {
        // The entry passed its CRC, so a batch that does not decode is a writer bug or a newer format: stop
        // rather than skip data.
        let batch = try decode(payload, segment, entry)
        for (slot, record) in batch.records.enumerated() {
            let dlsn = DLSN(segment: segment.sequence, entry: entry, slot: Int64(slot))
            if dlsn < cursor { continue }
            if let floor = txidFloor {
                if record.txid < floor && !record.isEndOfStream { continue }
                txidFloor = nil
            }
            if record.isEndOfStream {
                endOfStream = true
                return
            }
            if record.isControl { continue }
            ready.append(LogRecordWithDLSN(dlsn: dlsn, sequenceID: segment.startSequenceID + batch.firstPosition + Int64(slot),
                                           txid: record.txid, payload: record.payload))
        }
    }

    // MARK: Positioning by txid

    /// The DLSN of the first record at or after `position`.
    private func resolve(_ position: Position) async throws -> DLSN {
        switch position {
        case .dlsn(let dlsn):
            return dlsn
        case .txid(let txid):
            // Records written later than the search below may still carry lower txids: filter until one passes.
            txidFloor = txid
            segments = try await namespace.segments(name).map(\.segment)
            for segment in segments where segment.truncation != .truncated {
                if segment.state == .completed && segment.lastTxID < txid { continue }
                let reader = try await ledgerReader(for: segment)
                let readable = segment.state == .completed ? segment.lastEntry : reader.lastAddConfirmed.rawValue
                if let found = try await search(reader, segment, readable: readable, txid: txid) { return found }
                if segment.state != .completed {
                    return DLSN(segment: segment.sequence, entry: readable + 1, slot: 0)
                }
            }
            return DLSN(segment: (segments.last?.sequence ?? 0) + 1, entry: 0, slot: 0)
        }
    }

    /// Binary search over the entries 0...readable of a segment (txids never decrease) for the first record
    /// with a txid at or above `txid`.
    private func search(_ reader: LedgerReader, _ segment: LogSegment, readable: Int64, txid: Int64) async throws -> DLSN? {
        var low: Int64 = 0, high = readable + 1
        while low < high {
            let middle = low + (high - low) / 2
            let batch = try decode(try await read(reader, segment, from: middle, through: middle)[0], segment, middle)
            if batch.records.last!.txid < txid { low = middle + 1 } else { high = middle }
        }
        guard low <= readable else { return nil }
        let batch = try decode(try await read(reader, segment, from: low, through: low)[0], segment, low)
        let slot = batch.records.firstIndex { $0.txid >= txid }!
        return DLSN(segment: segment.sequence, entry: low, slot: Int64(slot))
    }
}
