import DLogIO
import DLogWire
import Foundation

extension LedgerStorage {
    public struct CheckpointResult: Sendable {
        public var entries: Int
        public var bytes: Int
        /// Where each journal's replay will start from now on.
        public var marks: [JournalPosition?]
        public var removedFiles: Int
    }

    /// Flushes the write cache, sorted by (ledger, entry), into a new entry log, then persists the manifest
    /// with the journal marks the cache was complete up to. After it returns, the journals may recycle
    /// everything before `marks`. One checkpoint runs at a time.
    public func checkpoint() throws -> CheckpointResult {
        try checkpointLock.withLock { _ in try checkpointLocked() }
    }

    private func checkpointLocked() throws -> CheckpointResult {
        // 1. Freeze the cache: reads still find it in `flushing`; new adds go to a fresh cache.
        let (frozen, marks, id, ledgerStates): (Cache, [JournalPosition?], UInt64, [UInt64: LedgerState])
            = state.withLock { s in
                let frozen = s.cache
                s.flushing = frozen
                s.flushingBytes = s.cacheBytes
                s.cache = [:]
                s.cacheBytes = 0
                let id = s.manifest.nextEntryLogID
                if !frozen.isEmpty { s.manifest.nextEntryLogID += 1 }
                return (frozen, s.appliedThrough, id, s.manifest.ledgers)
            }
        // 2. Write the entry log: only ledgers that still exist, sorted.
        var sorted: [(LedgerID, EntryID, [UInt8])] = []
        for (ledger, entries) in frozen where ledgerStates[ledger.rawValue] != nil {
            for (entry, bytes) in entries { sorted.append((ledger, EntryID(entry), bytes)) }
        }
        sorted.sort { ($0.0.rawValue, $0.1.rawValue) < ($1.0.rawValue, $1.1.rawValue) }
        var info: EntryLogInfo? = nil
        if !sorted.isEmpty {
            let dirIndex = Int(id % UInt64(configuration.ledgerDirectories.count))
            do {
                info = try EntryLogWriter.write(id: id, directoryIndex: dirIndex,
                                                directory: configuration.ledgerDirectories[dirIndex], entries: sorted,
                                                disk: configuration.disk)
            } catch {
                unfreeze(frozen)
                throw error
            }
        }
        // 3. Publish: the new file joins the manifest in the same step the frozen cache is dropped.
        let (manifest, dead): (Manifest, [EntryLogInfo]) = state.withLock { s in
            if var info {
                // Ledgers deleted while the file was written are not live in it.
                info.ledgers = info.ledgers.filter { s.manifest.ledgers[$0.key] != nil }
                s.manifest.entryLogs.append(info)
            }
            s.flushing = nil
            s.flushingBytes = 0
            s.manifest.journalMarks = zip(marks.indices, marks).map { i, m in m ?? s.manifest.journalMarks[i] }
            s.pendingRemoval += s.manifest.entryLogs.filter { $0.ledgers.isEmpty }
            s.manifest.entryLogs.removeAll { $0.ledgers.isEmpty }
            s.checkpoints += 1
            return (s.manifest, s.pendingRemoval)
        }
        // Nothing changed since the last write (idle ledgers, no new journal records): writing the same manifest
        // again would cost an encoding and a sync per ledger directory for nothing; with 10,000 idle streams it
        // was most of an idle cluster's CPU.
        if info == nil, dead.isEmpty, persistedBody.withLock({ $0 == manifest }) {
            return CheckpointResult(entries: 0, bytes: 0, marks: manifest.journalMarks, removedFiles: 0)
        }
        // If this write fails the previous manifest stays in force: its marks are older, so replay covers
        // everything, and the new entry log is merely unreferenced until the next checkpoint lists it.
        try persist(manifest, removing: dead)
        // 4. Files with no live ledger are gone from the persisted manifest: remove them (also those a failed
        // manifest write left behind).
        try remove(dead)
        return CheckpointResult(entries: sorted.count, bytes: sorted.reduce(0) { $0 + $1.2.count },
                                marks: manifest.journalMarks, removedFiles: dead.count)
    }

    /// A failed checkpoint puts the frozen entries back in the cache (newer adds of the same entry win),
    /// so nothing acknowledged leaves memory before it is in an entry log.
    private func unfreeze(_ frozen: Cache) {
        state.withLock { s in
            for (ledger, entries) in frozen where s.manifest.ledgers[ledger.rawValue] != nil {
                for (entry, bytes) in entries where s.cache[ledger]?[entry] == nil {
                    s.cache[ledger, default: [:]][entry] = bytes
                    s.cacheBytes += bytes.count
                }
            }
            s.flushing = nil
            s.flushingBytes = 0
        }
    }

    /// Writes both manifest copies with the next generation and the files still to be unlinked (the proof,
    /// at the next start, that they are garbage). Call under `checkpointLock`.
    func persist(_ manifest: Manifest, removing: [EntryLogInfo]) throws {
        var m = manifest
        m.generation = persistedGeneration.withLock { $0 } + 1
        m.removing = removing.map { RemovedEntryLog(id: $0.id, directory: $0.directory) }
        try manifestStore.write(m)
        persistedGeneration.withLock { $0 = m.generation }
        persistedBody.withLock { $0 = removing.isEmpty ? manifest : nil }
    }

    /// Deletes entry-log files the persisted manifest no longer lists, then syncs their directories so the
    /// unlinks survive a crash (a later manifest stops naming them as dropped).
    func remove(_ files: [EntryLogInfo]) throws {
        for file in files {
            _ = state.withLock { s in readersRemove(file.id) }
            try configuration.disk.remove(configuration.ledgerDirectories[file.directory] + "/" + EntryLogWriter.fileName(file.id))
        }
        for directory in Set(files.map(\.directory)).sorted() {
            try configuration.disk.syncDirectory(configuration.ledgerDirectories[directory])
        }
        let gone = Set(files.map(\.id))
        state.withLock { s in s.pendingRemoval.removeAll { gone.contains($0.id) } }
    }
}
