import DLogMetadata
import DLogWire
import Logging

/// How a worker moves entries: in batches (READ_RANGE from a replica, ADD_BATCH to the target), since per-request
/// work, not bytes, is most of what a copy costs; `batchesInFlight` batches at a time, so some are read while
/// others are written and the target's journal always has the next batch waiting for its sync.
extension ReplicationWorker {
    /// Copies `entries` (ascending) of position `position` of `fragment` to `target`, paced. Returns the bytes copied.
    func copy(_ id: LedgerID, entries: [Int64], fragment: LedgerMetadata.Fragment, position: Int,
              quorums: Quorums, to target: BookieID, key: MasterKey,
              live: [BookieID: BookieRegistration]) async throws -> Int {
        guard !entries.isEmpty else { return 0 }
        // Sources: the fragment's other bookies, live ones first; the marked bookie itself last (a bookie being
        // drained still serves reads). Each batch asks them in turn for what it still lacks: with striping, a
        // bookie holds only the entries whose write set names it, and a damaged copy is never handed out.
        var others: [BookieID] = []
        for (i, bookie) in fragment.bookies.enumerated() where i != position && !others.contains(bookie) {
            others.append(bookie)
        }
        let marked = fragment.bookies[position]
        // The worker's own bookie first among the live: it is read in process.
        let mine = others.filter { $0 == local?.id && live[$0] != nil }
        let sources = mine + others.filter { live[$0] != nil && !mine.contains($0) } + others.filter { live[$0] == nil }
            + (target != marked && live[marked] != nil ? [marked] : [])
        let depth = min(settings.batchesInFlight, settings.entriesInFlight)
        let batches = Self.batches(of: entries, size: max(1, settings.entriesInFlight / depth),
                                   gapMax: Int64(quorums.ensembleSize))
        var total = 0
        try await withThrowingTaskGroup(of: Int.self) { group in
            var next = 0
            func start() {
                let batch = batches[next]
                next += 1
                group.addTask { try await self.copyBatch(id, batch, from: sources, to: target, key: key) }
            }
            while next < batches.count && next < depth { start() }
            while let bytes = try await group.next() {
                total += bytes
                if next < batches.count { start() }
            }
        }
        return total
    }

    /// `request` to `bookie`: in process when it is the worker's own.
    private func send(_ request: BookieRequest, to bookie: BookieID, lane: UInt64) async throws -> BookieResponse {
        if let local, local.id == bookie, let answer = await local.serve(request) { return answer }
        return try await pool.send(request, to: bookie, lane: lane, timeout: settings.requestTimeout)
    }

    /// `entries` cut into runs of at most `size`, a run also ending where ids jump by more than `gapMax` (a range
    /// read across a long gap would fetch entries nobody needs).
    static func batches(of entries: [Int64], size: Int, gapMax: Int64) -> [[Int64]] {
        var out: [[Int64]] = []
        for entry in entries {
            if let last = out.last?.last, out[out.count - 1].count < size, entry - last <= gapMax {
                out[out.count - 1].append(entry)
            } else {
                out.append([entry])
            }
        }
        return out
    }

    /// Reads the entries of `batch` from the first source that has them intact (the next one for those it lacks or
    /// holds damaged), writing each answer to `target` as it comes. Returns the bytes copied.
    private func copyBatch(_ id: LedgerID, _ batch: [Int64], from sources: [BookieID], to target: BookieID,
                           key: MasterKey) async throws -> Int {
        var missing = Set(batch)
        var reasons: [String] = []
        var copied = 0
        for source in sources where !missing.isEmpty {
            var from = missing.min()!
            let last = missing.max()!
            while true {
                let answer: BookieResponse
                do {
                    answer = try await send(.readRange(ledger: id, first: EntryID(from), last: EntryID(last),
                                                       maxBytes: UInt32(settings.pieceBytes)), to: source, lane: id.rawValue)
                } catch {
                    reasons.append("\(source): \(error)")
                    break
                }
                guard case .entryBatch(let got, let next) = answer else {
                    if case .failed(let status, let message) = answer {
                        reasons.append("\(source): \(status) (\(message))")
                    } else {
                        reasons.append("\(source): unexpected answer \(answer)")
                    }
                    break
                }
                var chunk: [[UInt8]] = []
                var chunkIDs: [Int64] = []
                for bytes in got {
                    // A damaged or misplaced copy is never passed on: another replica is asked for it.
                    guard let header = try? EntryCodec.validate(bytes), header.ledger == id else {
                        reasons.append("\(source): a copy it sent is damaged")
                        logger.warning("damaged replica skipped while copying", metadata: [
                            "ledger_id": "\(id.rawValue)", "bookie_id": "\(source)"])
                        continue
                    }
                    let entry = header.entry.rawValue
                    guard missing.contains(entry), !chunkIDs.contains(entry) else { continue }
                    chunk.append(bytes)
                    chunkIDs.append(entry)
                }
                if !chunk.isEmpty {
                    let bytes = try await write(id, chunk, to: target, key: key)
                    for entry in chunkIDs { missing.remove(entry) }
                    copied += bytes
                    progress.withLock { $0.bytesCopied += Int64(bytes); $0.entriesCopied += Int64(chunk.count) }
                    let wait = pacer.withLock { $0.spend(bytes, now: .now) }
                    if wait > .zero { try await Task.sleep(for: wait) }
                }
                guard let next, next.rawValue <= last, let resume = missing.filter({ $0 >= next.rawValue }).min() else {
                    break
                }
                from = resume
            }
        }
        if let first = missing.min() {
            progress.withLock { $0.copyErrors += 1 }
            if reasons.isEmpty { reasons.append("no source holds it") }
            throw LedgerError.unreadable(id, EntryID(first), reasons)
        }
        return copied
    }

    /// Adds `entries` to `target` with the recovery flag (accepted on fenced ledgers and read-only bookies): one
    /// ADD_BATCH, or a plain ADD for a single entry (which may be larger than a batch). Returns their bytes.
    private func write(_ id: LedgerID, _ entries: [[UInt8]], to target: BookieID, key: MasterKey) async throws -> Int {
        let request: BookieRequest = entries.count == 1
            ? .add(masterKey: key, entry: entries[0], recovery: true)
            : .addBatch(masterKey: key, entries: entries, recovery: true)
        let answer: BookieResponse
        do {
            answer = try await send(request, to: target, lane: id.rawValue)
        } catch where entries.count > 1 {
            // A bookie whose max_frame_bytes is below this worker's batches closes the connection on one: each
            // entry then goes alone (as the bookie took it from its writer), so the copy still completes.
            logger.warning("a batch of copies failed; sending its entries one by one", metadata: [
                "ledger_id": "\(id.rawValue)", "bookie_id": "\(target)", "entries": "\(entries.count)", "error": "\(error)"])
            var bytes = 0
            for entry in entries { bytes += try await write(id, [entry], to: target, key: key) }
            return bytes
        }
        switch answer {
        case .added, .addedBatch:
            return entries.reduce(0) { $0 + $1.count }
        case .failed(let status, let message):
            throw LedgerError.bookieFailed(id, target, "copy of \(entries.count) entries refused: \(status) (\(message))")
        case let other:
            throw LedgerError.bookieFailed(id, target, "copy of \(entries.count) entries: unexpected answer \(other)")
        }
    }
}
