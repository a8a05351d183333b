import DLogWire

/// What one checkpoint changed in the `Manifest`: the record a checkpoint appends to the ledger index
/// (`IndexStore`), so its cost follows the ledgers and files that changed, not how many exist. Marks, the next
/// entry-log id and the removal list are small and always carried whole.
struct IndexDelta: Equatable, Sendable {
    var journalMarks: [JournalPosition?]
    var nextEntryLogID: UInt64
    var removing: [RemovedEntryLog]
    /// Ledgers deleted since the previous record: each leaves the lists of the entry logs that record knew.
    var unlisted: [UInt64]
    /// Every entry log's id, in the manifest's order (reads search it newest first).
    var entryLogOrder: [UInt64]
    /// The entry logs the previous record did not know, whole.
    var newEntryLogs: [EntryLogInfo]
    /// Ledgers set or, with a nil state, removed since the previous record.
    var ledgers: [LedgerChange]

    struct LedgerChange: Equatable, Sendable {
        var id: UInt64
        var state: LedgerState?
    }

    /// Whether writing it would change nothing the previous record said, given that record's marks,
    /// next id and removal list.
    func changesNothing(after previous: IndexDelta.Header) -> Bool {
        unlisted.isEmpty && newEntryLogs.isEmpty && ledgers.isEmpty && entryLogOrder == previous.entryLogOrder
            && journalMarks == previous.journalMarks && nextEntryLogID == previous.nextEntryLogID
            && removing == previous.removing
    }

    /// The small fields of the last record written, to tell an empty delta.
    struct Header: Equatable, Sendable {
        var journalMarks: [JournalPosition?] = []
        var nextEntryLogID: UInt64 = 0
        var removing: [RemovedEntryLog] = []
        var entryLogOrder: [UInt64] = []
    }

    var header: Header {
        Header(journalMarks: journalMarks, nextEntryLogID: nextEntryLogID, removing: removing, entryLogOrder: entryLogOrder)
    }
}

extension Manifest {
    /// The changes since the last call (or since load), and forgets them. `known` is the set of entry logs
    /// the index on disk lists; it becomes this manifest's.
    mutating func takeDelta(known: inout Set<UInt64>) -> IndexDelta {
        let changed = ledgers.takeChanged()
        return takeDelta(known: &known, ledgers: changed.sorted().map { IndexDelta.LedgerChange(id: $0, state: ledgers[$0]) })
    }

    /// The same, with the ledgers changed given (in id order): the bookie's ledger table is kept in shards.
    mutating func takeDelta(known: inout Set<UInt64>, ledgers changes: [IndexDelta.LedgerChange]) -> IndexDelta {
        let delta = IndexDelta(
            journalMarks: journalMarks, nextEntryLogID: nextEntryLogID, removing: removing,
            unlisted: unlisted.sorted(), entryLogOrder: entryLogs.map(\.id),
            newEntryLogs: entryLogs.filter { !known.contains($0.id) },
            ledgers: changes)
        unlisted = []
        known = Set(entryLogs.map(\.id))
        return delta
    }

    /// Forgets the changes: a snapshot of the whole manifest is about to cover them.
    mutating func forgetChanges(known: inout Set<UInt64>) {
        _ = ledgers.takeChanged()
        unlisted = []
        known = Set(entryLogs.map(\.id))
    }
}
