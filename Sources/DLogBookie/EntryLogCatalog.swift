/// What the bookie's storage knows that is no one ledger's: the entry logs with the ledgers each still holds,
/// the next entry log's id, the journal marks, and files on their way out. `LedgerShards` holds it under a lock
/// of its own, taken after a shard's lock whenever both are needed (a delete drops its ledger from the shard and
/// from these lists in one step).
struct EntryLogCatalog {
    /// Everything of the ledger index but the ledger table, which the shards hold.
    var manifest: Manifest
    /// Per journal, the position through which durable records are in the shards' caches.
    var appliedThrough: [JournalPosition?]
    /// Files dropped from `manifest.entryLogs`, deleted once a persisted index no longer lists them.
    var pendingRemoval: [EntryLogInfo] = []
    var checkpoints: UInt64 = 0

    init(manifest: Manifest) {
        var manifest = manifest
        manifest.ledgers = LedgerTable()
        self.manifest = manifest
        appliedThrough = manifest.journalMarks
    }

    /// A checkpoint's entry log (nil when it had nothing to write) joins the list, holding the ledgers that were
    /// live through the write; the marks the frozen cache was complete up to take effect. Files no live ledger
    /// is left in go to `pendingRemoval`. Returns the marks now in force.
    mutating func checkpointWritten(_ entryLog: EntryLogInfo?, marks: [JournalPosition?]) -> [JournalPosition?] {
        if let entryLog { manifest.entryLogs.append(entryLog) }
        manifest.journalMarks = zip(marks.indices, marks).map { i, m in m ?? manifest.journalMarks[i] }
        dropEmpty()
        checkpoints += 1
        return manifest.journalMarks
    }

    /// A compaction's copy (nil when nothing was live) takes the old file's place in the list: reads search
    /// newest first, so a newer file holding the same entry must keep winning.
    mutating func compacted(_ old: EntryLogInfo, into copy: EntryLogInfo?) {
        let place = manifest.entryLogs.firstIndex { $0.id == old.id }
        manifest.entryLogs.removeAll { $0.id == old.id }
        pendingRemoval.append(old)
        if let copy {
            manifest.entryLogs.insert(copy, at: min(place ?? manifest.entryLogs.count, manifest.entryLogs.count))
        }
    }

    private mutating func dropEmpty() {
        pendingRemoval += manifest.entryLogs.filter { $0.ledgers.isEmpty }
        manifest.entryLogs.removeAll { $0.ledgers.isEmpty }
    }

    /// An id for a new entry log.
    mutating func takeEntryLogID() -> UInt64 {
        defer { manifest.nextEntryLogID += 1 }
        return manifest.nextEntryLogID
    }
}
