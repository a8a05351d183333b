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
        /// Bytes written to each copy of the ledger index: a delta's, or (`indexSnapshot`) a whole snapshot's.
        public var indexBytes: Int
        public var indexSnapshot: Bool
    }

    /// Flushes the write cache, sorted by (ledger, entry), into a new entry log, then appends to the ledger
    /// index what changed, with the journal marks the cache was complete up to. After it returns, the journals
    /// may recycle everything before `marks`. One checkpoint runs at a time.
    public func checkpoint() throws -> CheckpointResult {
        try checkpointLock.withLock { store in try checkpointLocked(&store) }
    }

    private func checkpointLocked(_ store: inout IndexStore) throws -> CheckpointResult {
        // 1. Freeze the cache (see `LedgerShards.checkpointStarted`).
        let freeze = ledgers.checkpointStarted()
        defer { ledgers.flushEnded() }
        // 2. Write the entry log: only ledgers that still exist, sorted (each ledger's entries are kept in order).
        let count = freeze.entryCount
        var info: EntryLogInfo? = nil
        if count > 0 {
            let id = freeze.entryLogID
            let dirIndex = Int(id % UInt64(configuration.ledgerDirectories.count))
            do {
                info = try EntryLogWriter.write(id: id, directoryIndex: dirIndex,
                                                directory: configuration.ledgerDirectories[dirIndex], count: count,
                                                disk: configuration.disk, forEachEntry: freeze.forEachEntry)
            } catch {
                ledgers.checkpointFailed(freeze)
                throw error
            }
        }
        // 3. Publish: the new file joins the catalog in the same step the frozen caches are dropped; then the
        // index records it. If that write fails the index on disk keeps its older marks, so replay covers
        // everything, and the new entry log is merely unlisted there until the next checkpoint lists it.
        var newMarks: [JournalPosition?] = []
        let written = try persist(&store) { every in
            newMarks = ledgers.checkpointWritten(info, freeze, every)
        }
        return CheckpointResult(entries: count, bytes: info?.dataBytes ?? 0,
                                marks: newMarks, removedFiles: written.removedFiles, indexBytes: written.indexBytes,
                                indexSnapshot: written.snapshot)
    }

    private enum IndexWrite: Sendable {
        /// The catalog's part of the index, and each shard's ledger table (copies shared until changed).
        case snapshot(Manifest, [LedgerTable])
        case delta(IndexDelta)
    }

    /// Changes the state with `publish` (with every shard and the catalog locked), and in the same step takes
    /// what the ledger index must record: a delta of what changed, or a snapshot when the index wants one.
    /// Writes it with the files still to be unlinked (the proof, at the next start, that they are garbage),
    /// then unlinks those. Call under `checkpointLock`, with the store it holds.
    func persist(_ store: inout IndexStore, publish: (LedgerShards.Every) -> Void) throws -> (removedFiles: Int, indexBytes: Int, snapshot: Bool) {
        let wantsSnapshot = store.wantsSnapshot
        var known = store.known
        let (write, dead): (IndexWrite, [EntryLogInfo]) = ledgers.withEveryShard { every in
            publish(every)
            let c = every.catalog
            c.pointee.manifest.removing = c.pointee.pendingRemoval.map { RemovedEntryLog(id: $0.id, directory: $0.directory) }
            if wantsSnapshot {
                // Copies of the tables, shared until the next change to them: merging and encoding them runs
                // outside the locks.
                c.pointee.manifest.forgetChanges(known: &known)
                let tables = every.shards.map { p in
                    _ = p.pointee.ledgers.takeChanged()
                    return p.pointee.ledgers
                }
                return (.snapshot(c.pointee.manifest, tables), c.pointee.pendingRemoval)
            }
            // The changed ledgers' states are taken here; they are put in id order after the locks are left
            // (after a million new ledgers, sorting them held every add up for a third of a second).
            var changes: [IndexDelta.LedgerChange] = []
            for p in every.shards {
                for id in p.pointee.ledgers.takeChanged() {
                    changes.append(IndexDelta.LedgerChange(id: id, state: p.pointee.ledgers[id]))
                }
            }
            var delta = c.pointee.manifest.takeDelta(known: &known, ledgers: [])
            delta.ledgers = changes
            return (.delta(delta), c.pointee.pendingRemoval)
        }
        store.known = known
        let indexBytes: Int
        switch write {
        case .snapshot(var manifest, let tables):
            manifest.ledgers = LedgerTable(merging: tables)
            indexBytes = try store.writeSnapshot(manifest)
        case .delta(var delta):
            delta.ledgers.sort { $0.id < $1.id }
            indexBytes = try store.append(delta)
        }
        // 4. Files with no live ledger are gone from the index on disk: remove them (also those a failed write
        // left behind).
        try remove(dead)
        return (dead.count, indexBytes, wantsSnapshot)
    }

    /// Deletes entry-log files the ledger index on disk no longer lists, then syncs their directories so the
    /// unlinks survive a crash (a later record stops naming them as dropped).
    func remove(_ files: [EntryLogInfo]) throws {
        for file in files {
            _ = ledgers.catalog.withLock { _ in readersRemove(file.id) }
            try configuration.disk.remove(configuration.ledgerDirectories[file.directory] + "/" + EntryLogWriter.fileName(file.id))
        }
        for directory in Set(files.map(\.directory)).sorted() {
            try configuration.disk.syncDirectory(configuration.ledgerDirectories[directory])
        }
        let gone = Set(files.map(\.id))
        ledgers.catalog.withLock { s in s.pendingRemoval.removeAll { gone.contains($0.id) } }
    }
}
