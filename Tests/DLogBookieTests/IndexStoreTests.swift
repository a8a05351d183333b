@testable import DLogBookie
import DLogIO
import DLogTestSupport
import Testing

/// Random changes to a checkpoint state, of every kind a bookie makes: ledgers set, removed and unlisted from
/// entry logs; entry logs added (at the end, or in a compacted file's place) and dropped; marks, the next id
/// and the removal list.
private struct Changes {
    var random: SeededGenerator
    var nextLog: UInt64 = 1

    mutating func apply(to m: inout Manifest, count: Int) {
        for _ in 0..<count {
            let ledger = UInt64.random(in: 1...300, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0...3:
                var s = LedgerState(masterKey: (0..<20).map { _ in UInt8.random(in: 0...255, using: &random) })
                s.fenced = Bool.random(using: &random)
                s.explicitLAC = Int64.random(in: -1...1_000, using: &random)
                s.piggybackLAC = Int64.random(in: -1...1_000, using: &random)
                s.lastEntry = Int64.random(in: -1...(1 << 40), using: &random)
                m.ledgers[ledger] = s
            case 4:
                m.ledgers[ledger] = nil
                m.unlist(ledger)
            case 5:
                m.unlist(ledger)
            case 6, 7:
                var ledgers: [UInt64: EntryLogLedgerRange] = [:]
                for _ in 0..<Int.random(in: 0...40, using: &random) {
                    let first = Int64.random(in: 0...1_000, using: &random)
                    let count = Int.random(in: 1...50, using: &random)
                    ledgers[UInt64.random(in: 1...300, using: &random)] = EntryLogLedgerRange(
                        first: first, last: first + Int64(count) - 1, count: count, bytes: count * 100)
                }
                let info = EntryLogInfo(id: nextLog, directory: Int.random(in: 0...1, using: &random),
                                        totalBytes: 1 << 20, dataBytes: 1 << 19, ledgers: LedgerRanges(ledgers))
                nextLog += 1
                m.entryLogs.insert(info, at: Int.random(in: 0...m.entryLogs.count, using: &random))
            case 8:
                if let drop = m.entryLogs.randomElement(using: &random) {
                    m.entryLogs.removeAll { $0.id == drop.id }
                    m.removing.append(RemovedEntryLog(id: drop.id, directory: drop.directory))
                }
            default:
                m.journalMarks[Int.random(in: 0...1, using: &random)] = JournalPosition(
                    fileNumber: UInt64.random(in: 1...9, using: &random), offset: Int64.random(in: 0...(1 << 30), using: &random),
                    nextSeq: UInt64.random(in: 0...(1 << 50), using: &random))
                if Bool.random(using: &random) { m.removing = [] }
            }
        }
        m.nextEntryLogID = nextLog
    }
}

/// Writes what `m` changed since the last write: a snapshot when the store wants one (or one time in
/// `snapshotOneIn`), else a delta.
private func write(_ m: inout Manifest, to store: inout IndexStore, snapshot: Bool) throws {
    if snapshot || store.wantsSnapshot {
        m.forgetChanges(known: &store.known)
        try store.writeSnapshot(m)
    } else {
        try store.append(m.takeDelta(known: &store.known))
    }
}

@Suite struct IndexStoreTests {
    /// Sixty checkpoints of random changes, each written as a delta (or now and then a snapshot), read back
    /// after every one by a fresh store: the state read is the state written, exactly.
    @Test(arguments: 0 ..< 12) func randomChangesReadBackExactly(seed: UInt64) throws {
        var changes = Changes(random: SeededGenerator(seed: seed))
        let disk = SimulatedDisk()
        let dirs = seed.isMultiple(of: 2) ? ["/l0"] : ["/l0", "/l1"]
        for dir in dirs { try disk.makeDirectory(dir) }
        var store = IndexStore(directories: dirs, disk: disk)
        _ = try store.load()
        var m = Manifest()
        m.journalMarks = [nil, nil]
        var deltas = 0
        for step in 0 ..< 60 {
            changes.apply(to: &m, count: Int.random(in: 0...30, using: &changes.random))
            // Ledger directory indexes must name configured directories.
            for i in m.entryLogs.indices { m.entryLogs[i].directory %= dirs.count }
            for i in m.removing.indices { m.removing[i].directory %= dirs.count }
            let snapshot = Int.random(in: 0..<10, using: &changes.random) == 0
            if !snapshot && !store.wantsSnapshot { deltas += 1 }
            try write(&m, to: &store, snapshot: snapshot)
            m.generation = store.generation
            var fresh = IndexStore(directories: dirs, disk: disk)
            let loaded = try fresh.load()
            #expect(loaded.notes.isEmpty, "seed \(seed) step \(step): \(loaded.notes)")
            #expect(loaded.manifest == m, "seed \(seed) step \(step): the state read back differs")
            if loaded.manifest != m { return }
        }
        #expect(deltas > 30, "seed \(seed): most writes must be deltas")
    }

    /// An index write (a delta, or a snapshot) stopped after any number of its disk changes, then a power
    /// cut that drops or tears what was not synced: start-up loads the state before it or the state after
    /// it, never refuses, never anything else; once the write returned, the state after it. With one ledger
    /// directory (two copies in it) and with two.
    @Test(arguments: [["/l0"], ["/l0", "/l1"]]) func everyCutLeavesALoadableIndex(_ directories: [String]) throws {
        for snapshot in [false, true] {
            var completedAt: Int?
            for cut in 0 ..< 200 where completedAt == nil {
                let disk = SimulatedDisk()
                for dir in directories { try disk.makeDirectory(dir) }
                var changes = Changes(random: SeededGenerator(seed: 99))
                var store = IndexStore(directories: directories, disk: disk)
                _ = try store.load()
                var m = Manifest()
                m.journalMarks = [nil, nil]
                changes.apply(to: &m, count: 40)
                for i in m.entryLogs.indices { m.entryLogs[i].directory = 0 }
                m.removing = []
                try write(&m, to: &store, snapshot: true)
                changes.apply(to: &m, count: 20)
                for i in m.entryLogs.indices { m.entryLogs[i].directory = 0 }
                m.removing = []
                try write(&m, to: &store, snapshot: false)
                var before = m
                before.generation = store.generation
                changes.apply(to: &m, count: 20)
                for i in m.entryLogs.indices { m.entryLogs[i].directory = 0 }
                m.removing = []
                var after = m
                after.generation = store.generation + 1
                disk.haltAfter(changes: cut)
                let completed = (try? write(&m, to: &store, snapshot: snapshot)) != nil
                disk.crash(seed: UInt64(cut), keep: cut.isMultiple(of: 2) ? .nothing : .randomSectors)
                var fresh = IndexStore(directories: directories, disk: disk)
                let loaded: IndexStore.Loaded
                do {
                    loaded = try fresh.load()
                } catch {
                    Issue.record("\(snapshot ? "snapshot" : "delta") cut after \(cut) changes: start-up refused: \(error)")
                    continue
                }
                let what = "\(snapshot ? "snapshot" : "delta") cut after \(cut) changes"
                #expect(loaded.manifest == before || loaded.manifest == after, "\(what): neither state")
                if completed {
                    #expect(loaded.manifest == after, "\(what): the write returned, yet a crash after it lost it")
                    completedAt = cut
                }
            }
            #expect(completedAt != nil, "a \(snapshot ? "snapshot" : "delta") never completed within 200 changes")
        }
    }

    /// Deltas pile up only until they pass half the snapshot (and 4 MiB): then the next write is a snapshot,
    /// so a restart never reads much more than one snapshot's worth.
    @Test func deltasAreFoldedIntoASnapshot() throws {
        let disk = SimulatedDisk()
        try disk.makeDirectory("/l0")
        var store = IndexStore(directories: ["/l0"], disk: disk)
        _ = try store.load()
        var m = Manifest()
        m.journalMarks = [nil]
        let key = [UInt8](repeating: 7, count: 20)
        for l in UInt64(1)...200_000 { m.ledgers[l] = LedgerState(masterKey: key) }
        try write(&m, to: &store, snapshot: true)
        let snapshotBytes = try disk.readAll("/l0/" + IndexStore.fileName).count
        var round = 0
        while !store.wantsSnapshot {
            for l in UInt64(1)...20_000 { m.ledgers[l + UInt64(round % 10) * 20_000]!.lastEntry += 1 }
            try write(&m, to: &store, snapshot: false)
            round += 1
        }
        let grown = try disk.readAll("/l0/" + IndexStore.fileName).count
        #expect(grown >= snapshotBytes + snapshotBytes / 2 && grown < 2 * snapshotBytes, "\(snapshotBytes) → \(grown)")
        try write(&m, to: &store, snapshot: false)
        #expect(try disk.readAll("/l0/" + IndexStore.fileName).count < grown, "the next write was not a snapshot")
        var fresh = IndexStore(directories: ["/l0"], disk: disk)
        #expect(try fresh.load().manifest.ledgers == m.ledgers)
    }
}

@Suite struct IndexDocTests {
    /// The state of docs/storage.md's example: one journal, entry log 4 with entries 0...9 of ledger 7.
    static func example() -> (snapshot: Manifest, after: Manifest, delta: IndexDelta) {
        var m = Manifest()
        m.journalMarks = [JournalPosition(fileNumber: 3, offset: 40960, nextSeq: 412)]
        m.nextEntryLogID = 5
        m.entryLogs = [EntryLogInfo(id: 4, directory: 0, totalBytes: 16384, dataBytes: 10240,
                                    ledgers: [7: EntryLogLedgerRange(first: 0, last: 9, count: 10, bytes: 10240)])]
        var state = LedgerState(masterKey: Array(1...20))
        state.piggybackLAC = 8
        state.lastEntry = 9
        m.ledgers[7] = state
        var known = Set<UInt64>()
        m.forgetChanges(known: &known)
        let snapshot = m
        m.entryLogs.append(EntryLogInfo(id: 5, directory: 0, totalBytes: 8192, dataBytes: 1024,
                                        ledgers: [7: EntryLogLedgerRange(first: 10, last: 10, count: 1, bytes: 1024)]))
        m.nextEntryLogID = 6
        m.journalMarks = [JournalPosition(fileNumber: 3, offset: 45056, nextSeq: 413)]
        m.ledgers[7]!.piggybackLAC = 9
        m.ledgers[7]!.lastEntry = 10
        let delta = m.takeDelta(known: &known)
        return (snapshot, m, delta)
    }

    /// The documented bytes are what the encoder writes for that state, and they read back as it.
    @Test func theDocumentedBytesAreWhatIsWritten() throws {
        let (snapshot, after, delta) = Self.example()
        let written = IndexFormat.fileHeader() + IndexFormat.record(generation: 12, body: IndexFormat.snapshotBody(snapshot))
            + IndexFormat.record(generation: 13, body: IndexFormat.body(delta))
        let documented = try DocExamples("storage.md").bytes("ledger-index")
        #expect(documented == written, "docs/storage.md should show:\n\(Self.hexRows(written))")
        guard case .intact(let contents) = IndexFile.parse(documented, directories: 1) else {
            Issue.record("the documented bytes do not read as an intact index"); return
        }
        var expected = after
        expected.generation = 13
        #expect(contents.manifest == expected && contents.generation == 13 && contents.tornTail == nil)
    }

    static func hexRows(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: bytes.count, by: 16).map { at in
            String(format: "%04x  ", at) + bytes[at ..< min(at + 16, bytes.count)].map { String(format: "%02x", $0) }.joined(separator: " ")
        }.joined(separator: "\n")
    }
}
