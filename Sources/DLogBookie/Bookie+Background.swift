import DLogIO
#if canImport(Glibc)
import Glibc
#endif
import Foundation

extension Bookie {
    /// Background work on threads of the bookie's own (unless `Configuration.backgroundThreads` is off): one
    /// thread takes a `backgroundTurn` whenever the last one said the next is due, or sooner when woken (an ask
    /// for a checkpoint, a paused connection, a stop); another compacts on its interval. Neither polls. Both
    /// signal `background` when they end.
    func startBackground() {
        guard configuration.backgroundThreads else { return }
        let thread = Thread { [self] in
            while !stopping.load(ordering: .acquiring) {
                backgroundTurns.wrappingAdd(1, ordering: .relaxed)
                backgroundWakeup.wait(until: backgroundTurn(clock: SystemClock()))
            }
            background.signal()
        }
        thread.name = "bookie-background"
        thread.start()
        // Compaction has its own thread: a paced pass may take seconds and must not hold up checkpoints.
        let compactor = Thread { [self] in
            while !stopping.load(ordering: .acquiring) {
                compactionWakeup.wait(until: .now + configuration.compactionInterval)
                if stopping.load(ordering: .acquiring) { break }
                runCompaction()
            }
            background.signal()
        }
        compactor.name = "bookie-compaction"
        compactor.start()
    }

    /// One turn of background work, at the times `BackgroundSchedule` says on `clock`: a disk check for
    /// read-only mode, a checkpoint on the interval or when asked (cache full, journal short of files), and
    /// the connections paused by back-pressure resumed once it eased. Never waits: the driver (the bookie's
    /// thread, or the simulator) decides when the next turn comes. Turns must not overlap. Returns when the next
    /// turn is due, unless news comes first.
    @discardableResult
    public func backgroundTurn(clock: any StorageClock) -> ContinuousClock.Instant {
        let work = schedule.withLock { schedule in
            if schedule == nil {
                schedule = BackgroundSchedule(start: clock.now, checkpointInterval: configuration.checkpointInterval,
                                              diskCheckInterval: configuration.diskCheckInterval)
            }
            return schedule!.next(now: clock.now, checkpointAsked: checkpointRequested.load(ordering: .acquiring))
        }
        if work.checkDisks { checkDisks() }
        if work.checkpoint {
            if work.takesAsk { checkpointRequested.store(false, ordering: .releasing) }
            let error = runCheckpoint()
            let (ended, failures) = schedule.withLock { ($0!.checkpointEnded(error, at: clock.now), $0!.checkpointFailures) }
            report(ended)
            checkpointFailures.store(failures, ordering: .relaxed)
        }
        if !underWritePressure {
            for resume in relief.withLock({ list in defer { list = [] }; return list }) { resume() }
        } else {
            checkpointRequested.store(true, ordering: .relaxed)
        }
        let asked = checkpointRequested.load(ordering: .acquiring)
        return schedule.withLock { $0!.nextDue(now: clock.now, checkpointAsked: asked) }
    }

    /// Runs one checkpoint; returns why it failed, or nil.
    func runCheckpoint() -> String? {
        do {
            let started = ContinuousClock.now
            let result = try storage.checkpoint()
            let elapsed = ContinuousClock.now - started
            lastCheckpointError.withLock { $0 = nil }
            if result.entries > 0 || result.indexBytes > 0 {
                lastCheckpoint.withLock { $0 = CheckpointTiming(result, elapsed: elapsed) }
            }
            if result.entries > 0 {
                flushedSinceTrim.store(true, ordering: .relaxed)
            } else if result.indexBytes == 0, flushedSinceTrim.exchange(false, ordering: .relaxed) {
                // The adds stopped: what the write cache and the checkpoints freed goes back to the system now.
                Memory.returnFreedToSystem()
            }
            leaveOutOfSpace()
            for (i, journal) in journals.enumerated() {
                if let mark = result.marks[i] { journal.release(through: mark) }
            }
            if result.entries > 0 {
                logger.debug("checkpoint", metadata: ["entries": "\(result.entries)", "bytes": "\(result.bytes)",
                                                      "removedFiles": "\(result.removedFiles)",
                                                      "elapsed": "\(elapsed)"])
            }
            return nil
        } catch {
            // The journal and the cache still hold everything; adds go on while the cache has room, then
            // back-pressure, with this reason in the refusal (a full ledger disk, say).
            lastCheckpointError.withLock { $0 = "\(error)" }
            if let system = error as? SystemError, system.errno == ENOSPC {
                enterOutOfSpace("checkpoint: \(system)")
            }
            return "\(error)"
        }
    }

    private func report(_ report: CheckpointRetry.Report) {
        switch report {
        case .quiet:
            break
        case .failing(let error, let failures):
            logger.error("checkpoint failed; will retry", metadata: ["error": "\(error)", "failures": "\(failures)"])
        case .recovered(let failures):
            logger.notice("checkpoints succeed again", metadata: ["failures": "\(failures)"])
        }
    }

    /// Compacts one mostly-dead entry log per pass, paced by the compaction budget. Runs in read-only mode
    /// too: it is what frees space.
    func runCompaction() {
        guard let id = storage.compactionCandidate(threshold: configuration.compactionThreshold) else { return }
        defer { reportRepairs() }
        do {
            if let r = try storage.compact(id, bytesPerSecond: configuration.compactionBytesPerSecond,
                                           shouldStop: { stopping.load(ordering: .relaxed) }) {
                logger.info("entry log compacted", metadata: [
                    "file": "\(r.compactedFile)", "into": "\(r.newFile.map { "\($0)" } ?? "nothing")",
                    "liveBytes": "\(r.liveBytes)", "reclaimedBytes": "\(r.reclaimedBytes)"])
            }
        } catch {
            logger.error("compaction failed; will retry", metadata: ["file": "\(id)", "error": "\(error)"])
            if let system = error as? SystemError, system.errno == ENOSPC { enterOutOfSpace("compaction: \(system)") }
        }
    }

    /// The used fraction of each journal and ledger directory's file system (for metrics), by kind and index; a
    /// directory whose file system cannot be asked is left out.
    public func diskUsage() -> [(kind: String, index: Int, usedFraction: Double)] {
        let journals = configuration.journalDirectories.enumerated().compactMap { index, dir in
            (try? configuration.journal.disk.usage(of: dir)).map { ("journal", index, $0.usedFraction) }
        }
        let ledgers = configuration.storage.ledgerDirectories.enumerated().compactMap { index, dir in
            (try? configuration.storage.disk.usage(of: dir)).map { ("ledger", index, $0.usedFraction) }
        }
        return journals + ledgers
    }

    /// Read-only above the threshold on any directory; writable again once all are below the low-water mark.
    func checkDisks() {
        var worst = 0.0
        var worstPath = ""
        let directories = configuration.journalDirectories.map { ($0, configuration.journal.disk) }
            + configuration.storage.ledgerDirectories.map { ($0, configuration.storage.disk) }
        for (dir, disk) in directories {
            guard let usage = try? disk.usage(of: dir) else { continue }
            if usage.usedFraction > worst { worst = usage.usedFraction; worstPath = dir }
        }
        let wasReadOnly = readOnly.load(ordering: .relaxed)
        let thresholds = diskThresholdsInForce
        if !wasReadOnly && worst >= thresholds.high {
            readOnly.store(true, ordering: .relaxed)
            logger.warning("entering read-only mode: disk usage over threshold", metadata: [
                "dir": "\(worstPath)", "used": "\(Int(worst * 100))%",
                "threshold": "\(Int(thresholds.high * 100))%"])
        } else if wasReadOnly && worst < thresholds.low {
            readOnly.store(false, ordering: .relaxed)
            logger.notice("leaving read-only mode: disk usage below low-water mark", metadata: [
                "used": "\(Int(worst * 100))%"])
        }
    }

    /// GET_INFO: a JSON object for tools (dlog-bench reads `journals[].syncs` and `recordsSynced`).
    public func infoJSON() -> String {
        struct Info: Encodable {
            var state: String
            var ledgers: Int
            var cacheBytes: Int
            var entryLogs: Int
            var checkpoints: UInt64
            var totalBytes: UInt64
            var freeBytes: UInt64
            var journals: [JournalStats]
            var lastCheckpointError: String?
            var checkpointFailures: Int
            var readOnlyReason: String?
            /// Entry logs start-up moved to quarantine/, and entry logs that can be neither read nor rebuilt.
            var quarantinedEntryLogs: [String]
            var unreadableEntryLogs: [String]
            var lastCheckpoint: CheckpointTiming?
        }
        let usage = try? configuration.storage.disk.usage(of: configuration.storage.ledgerDirectories[0])
        let info = Info(state: isReadOnly ? "read-only" : "writable", ledgers: storage.ledgerCount,
                        cacheBytes: storage.cacheBytes, entryLogs: storage.entryLogCount,
                        checkpoints: storage.checkpoints, totalBytes: usage?.totalBytes ?? 0,
                        freeBytes: usage?.freeBytes ?? 0, journals: journals.map(\.stats),
                        lastCheckpointError: lastCheckpointError.withLock { $0 },
                        checkpointFailures: checkpointFailuresInARow,
                        readOnlyReason: isReadOnly ? readOnlyReason : nil,
                        quarantinedEntryLogs: storage.startReport.quarantined,
                        unreadableEntryLogs: storage.unreadableEntryLogs.sorted { $0.key < $1.key }
                            .map { "entrylog-\($0.key).log: \($0.value)" },
                        lastCheckpoint: lastCheckpoint.withLock { $0 })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(info)) ?? Data(), as: UTF8.self)
    }
}

/// The last checkpoint that wrote something, as GET_INFO reports it.
struct CheckpointTiming: Encodable, Sendable {
    var seconds: Double
    var entries: Int
    /// Bytes written to each copy of the ledger index, and whether they were a whole snapshot.
    var indexBytes: Int
    var indexSnapshot: Bool

    init(_ result: LedgerStorage.CheckpointResult, elapsed: Duration) {
        seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        entries = result.entries
        indexBytes = result.indexBytes
        indexSnapshot = result.indexSnapshot
    }
}
