// Reaches internal decoders through `@testable import`, which only a build with testability allows (debug, or
// the fuzzer build): a release build of the package leaves this target out (FuzzTarget.all).
#if DEBUG || DLOG_FUZZ
@testable import DLogBookie
import DLogWire

/// `IndexFile.parse`: one copy of the ledger index (a snapshot, then deltas) as start-up reads it, for a
/// bookie with two ledger directories.
///
/// Mode bit 1: the input is record bodies, each after a u16 length; the harness writes a valid file header
/// and record headers (generations 1, 2, …) whose CRCs match, so mutations reach the body decoder. Otherwise
/// the input is the file.
/// Contracts: no trap for any file; an intact copy names configured directories only and valid entry ranges;
/// written again as a snapshot and read back, it is the same state.
enum IndexTarget {
    static let directories = 2

    static let target = FuzzTarget(name: "index", run: { bytes in
        let input = ModedInput(bytes)
        let file = input.mode & 1 != 0 ? framed(input.rest) : input.rest
        guard case .intact(let contents) = IndexFile.parse(file, directories: directories) else { return }
        let m = contents.manifest
        require(m.entryLogs.allSatisfy { (0..<directories).contains($0.directory) }
                    && m.removing.allSatisfy { (0..<directories).contains($0.directory) },
                "an intact index names a ledger directory that is not configured")
        require(m.entryLogs.allSatisfy { $0.ledgers.allSatisfy { $0.value.first >= 0 && $0.value.first <= $0.value.last && $0.value.count > 0 } },
                "an intact index holds an impossible entry range")
        require(Set(m.entryLogs.map(\.id)).count == m.entryLogs.count, "an intact index lists an entry log twice")
        let again = IndexFormat.fileHeader()
            + IndexFormat.record(generation: contents.generation, body: IndexFormat.snapshotBody(m))
        guard case .intact(let reread) = IndexFile.parse(again, directories: directories) else {
            fatalError("a snapshot of an intact index does not read back")
        }
        require(reread.manifest == m, "the index does not survive a snapshot and a read")
    }, seeds: IndexSeeds.all)

    /// Bodies, each after a u16 length, framed as records of a file.
    static func framed(_ rest: [UInt8]) -> [UInt8] {
        var file = IndexFormat.fileHeader()
        var at = 0
        var generation: UInt64 = 1
        while at + 2 <= rest.count {
            let length = min(Int(rest[at]) << 8 | Int(rest[at + 1]), rest.count - at - 2)
            file += IndexFormat.record(generation: generation, body: Array(rest[at + 2 ..< at + 2 + length]))
            at += 2 + length
            generation += 1
        }
        return file
    }
}

/// Index files as checkpoints write them: a snapshot and two deltas (a new entry log, a deleted ledger), whole
/// and as framed bodies.
enum IndexSeeds {
    @Sendable static func all() -> [[UInt8]] {
        var m = Manifest()
        m.journalMarks = [JournalPosition(fileNumber: 2, offset: 8192, nextSeq: 40), nil]
        m.nextEntryLogID = 5
        m.entryLogs = [EntryLogInfo(id: 4, directory: 1, totalBytes: 16384, dataBytes: 900,
                                    ledgers: [7: EntryLogLedgerRange(first: 0, last: 9, count: 10, bytes: 900)])]
        m.ledgers[7] = LedgerState(masterKey: MasterKey(password: "fuzz").bytes)
        m.ledgers[8] = LedgerState(masterKey: MasterKey(password: "fuzz").bytes)
        var known = Set<UInt64>()
        m.forgetChanges(known: &known)
        var bodies = [IndexFormat.snapshotBody(m)]
        m.entryLogs.append(EntryLogInfo(id: 5, directory: 0, totalBytes: 8192, dataBytes: 100,
                                        ledgers: [8: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100)]))
        m.nextEntryLogID = 6
        m.ledgers[8]!.lastEntry = 0
        bodies.append(IndexFormat.body(m.takeDelta(known: &known)))
        m.ledgers[7] = nil
        m.unlist(7)
        m.removing = [RemovedEntryLog(id: 4, directory: 1)]
        m.entryLogs.removeAll { $0.id == 4 }
        bodies.append(IndexFormat.body(m.takeDelta(known: &known)))
        var whole = IndexFormat.fileHeader()
        var framed: [UInt8] = []
        for (i, body) in bodies.enumerated() {
            whole += IndexFormat.record(generation: UInt64(i + 1), body: body)
            framed += [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        }
        return [[0] + whole, [1] + framed]
    }
}
#endif
