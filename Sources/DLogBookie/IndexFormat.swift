import DLogWire

// # Ledger index file format (version 1)
//
// The checkpoint state (`Manifest`) on disk: one file per copy, `ledgers.index`, a snapshot of everything
// followed by one delta per checkpoint (what it changed). All integers are big-endian.
//
//     file header, 16 bytes: magic "DLIX" u32, format version u32, zero u32, CRC32C of bytes 0..<12 u32
//     records, back to back; the first is a snapshot, every later one a delta:
//       record header, 24 bytes: magic "DLIR" u32, body length u32, generation u64,
//                                CRC32C of the body u32, CRC32C of header bytes 0..<20 u32
//       body:
//         kind u8                          1 snapshot, 2 delta
//         journal marks: count u32, each: present u8 (0 or 1), then if 1: file number u64, offset i64, next seq u64
//         next entry-log id u64
//         removing: count u32, each: entry-log id u64, ledger directory index u32
//         unlisted: count u32, each: ledger id u64           (deltas only; a snapshot has 0)
//         entry-log order: count u32, each: entry-log id u64
//         new entry logs: count u32, each: id u64, directory u32, total bytes u64, data bytes u64,
//                         ledger count u32, each: ledger u64, first i64, last i64, count u64, bytes u64
//         ledgers: count u32, each: ledger u64, present u8, then if 1: master key (20 bytes), fenced u8,
//                  explicit LAC i64, piggyback LAC i64, last entry i64
//
// A delta applies to the state the record before it left: its unlisted ledgers leave the entry logs that
// state knew, its entry-log order names each entry log either known or new, its ledgers are set or removed.
// Generations count up by one from record to record. The header's own CRC makes its length trustworthy
// before the body is read, so a torn last record is told apart from damage in the middle (`IndexFile`).
enum IndexFormat {
    static let magic: UInt32 = 0x444C_4958  // "DLIX"
    static let recordMagic: UInt32 = 0x444C_4952  // "DLIR"
    static let version: UInt32 = 1
    static let fileHeaderBytes = 16
    static let recordHeaderBytes = 24
    /// A bound on one record's body that no real state reaches (a million ledgers take about 100 MB), so a
    /// damaged length is never trusted to allocate.
    static let bodyBytesMax = 1 << 31 - 1

    enum Kind: UInt8 {
        case snapshot = 1
        case delta = 2
    }

    static func fileHeader() -> [UInt8] {
        var out = [UInt8]()
        out.appendBigEndian(magic)
        out.appendBigEndian(version)
        out.appendBigEndian(UInt32(0))
        out.appendBigEndian(CRC32C.checksum(out))
        return out
    }

    /// A record: its header, then `body`.
    static func record(generation: UInt64, body: [UInt8]) -> [UInt8] {
        precondition(body.count <= bodyBytesMax)
        var out = [UInt8]()
        out.reserveCapacity(recordHeaderBytes + body.count)
        out.appendBigEndian(recordMagic)
        out.appendBigEndian(UInt32(body.count))
        out.appendBigEndian(generation)
        out.appendBigEndian(CRC32C.checksum(body))
        out.appendBigEndian(CRC32C.checksum(out))
        out += body
        return out
    }

    // MARK: Bodies

    static func body(_ delta: IndexDelta) -> [UInt8] {
        var out = [UInt8]()
        out.append(Kind.delta.rawValue)
        writeSmallFields(delta.journalMarks, delta.nextEntryLogID, delta.removing, into: &out)
        out.appendBigEndian(UInt32(delta.unlisted.count))
        for id in delta.unlisted { out.appendBigEndian(id) }
        writeEntryLogs(order: delta.entryLogOrder, new: delta.newEntryLogs, into: &out)
        out.appendBigEndian(UInt32(delta.ledgers.count))
        for change in delta.ledgers { write(change.id, change.state, into: &out) }
        return out
    }

    /// The whole manifest, written straight from it: no copy of a million ledgers on the way.
    static func snapshotBody(_ m: Manifest) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(64 + m.ledgers.count * 56 + m.entryLogs.reduce(0) { $0 + 40 + $1.ledgers.count * 40 })
        out.append(Kind.snapshot.rawValue)
        writeSmallFields(m.journalMarks, m.nextEntryLogID, m.removing, into: &out)
        out.appendBigEndian(UInt32(0))
        writeEntryLogs(order: m.entryLogs.map(\.id), new: m.entryLogs, into: &out)
        out.appendBigEndian(UInt32(m.ledgers.count))
        // In id order, which is how the table keeps them: a snapshot then loads by appending.
        m.ledgers.forEach { id, state in write(id, state, into: &out) }
        return out
    }

    private static func writeSmallFields(_ marks: [JournalPosition?], _ nextID: UInt64, _ removing: [RemovedEntryLog],
                                         into out: inout [UInt8]) {
        out.appendBigEndian(UInt32(marks.count))
        for mark in marks {
            guard let mark else { out.append(0); continue }
            out.append(1)
            out.appendBigEndian(mark.fileNumber)
            out.appendBigEndian(mark.offset)
            out.appendBigEndian(mark.nextSeq)
        }
        out.appendBigEndian(nextID)
        out.appendBigEndian(UInt32(removing.count))
        for r in removing {
            out.appendBigEndian(r.id)
            out.appendBigEndian(UInt32(r.directory))
        }
    }

    private static func writeEntryLogs(order: [UInt64], new: [EntryLogInfo], into out: inout [UInt8]) {
        out.appendBigEndian(UInt32(order.count))
        for id in order { out.appendBigEndian(id) }
        out.appendBigEndian(UInt32(new.count))
        for info in new {
            out.appendBigEndian(info.id)
            out.appendBigEndian(UInt32(info.directory))
            out.appendBigEndian(UInt64(info.totalBytes))
            out.appendBigEndian(UInt64(info.dataBytes))
            out.appendBigEndian(UInt32(info.ledgers.count))
            for (ledger, range) in info.ledgers {
                out.appendBigEndian(ledger)
                out.appendBigEndian(range.first)
                out.appendBigEndian(range.last)
                out.appendBigEndian(UInt64(range.count))
                out.appendBigEndian(UInt64(range.bytes))
            }
        }
    }

    private static func write(_ id: UInt64, _ state: LedgerState?, into out: inout [UInt8]) {
        out.appendBigEndian(id)
        guard let state else { out.append(0); return }
        out.append(1)
        state.appendKey(to: &out)
        out.append(state.fenced ? 1 : 0)
        out.appendBigEndian(state.explicitLAC)
        out.appendBigEndian(state.piggybackLAC)
        out.appendBigEndian(state.lastEntry)
    }

    // MARK: Reading

    /// Why a body that passed its CRC does not make sense: a bug or deliberate damage, never a torn write.
    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    /// Applies one record's body, `raw[range]`, to `m`: a snapshot to an empty manifest, a delta to what the
    /// records before it built. `directories` bounds the ledger directory indexes. Throws `Malformed` naming
    /// what is wrong; `m` is then unusable.
    static func apply(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>, to m: inout Manifest, expecting kind: Kind,
                      directories: Int) throws(Malformed) {
        var r = BodyReader(raw: raw, at: range.lowerBound, end: range.upperBound)
        guard let found = Kind(rawValue: try r.u8()), found == kind else {
            throw Malformed(description: "a \(kind == .snapshot ? "snapshot" : "delta") was expected")
        }
        let markCount = try r.count(each: 1)
        m.journalMarks = []
        for _ in 0..<markCount {
            switch try r.u8() {
            case 0: m.journalMarks.append(nil)
            case 1: m.journalMarks.append(JournalPosition(fileNumber: try r.u64(), offset: Int64(bitPattern: try r.u64()),
                                                          nextSeq: try r.u64()))
            default: throw Malformed(description: "journal mark presence byte is neither 0 nor 1")
            }
        }
        m.nextEntryLogID = try r.u64()
        m.removing = []
        for _ in 0..<(try r.count(each: 12)) {
            m.removing.append(RemovedEntryLog(id: try r.u64(), directory: try r.directory(directories)))
        }
        for _ in 0..<(try r.count(each: 8)) { m.unlist(try r.u64()) }
        m.unlisted = []
        var order: [UInt64] = []
        for _ in 0..<(try r.count(each: 8)) { order.append(try r.u64()) }
        guard Set(order).count == order.count else { throw Malformed(description: "an entry log is listed twice") }
        var known = Dictionary(m.entryLogs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for _ in 0..<(try r.count(each: 32)) {
            let info = try r.entryLog(directories)
            guard known.updateValue(info, forKey: info.id) == nil else {
                throw Malformed(description: "entry log \(info.id) is listed as new but was known")
            }
        }
        var logs: [EntryLogInfo] = []
        logs.reserveCapacity(order.count)
        for id in order {
            guard let info = known[id] else {
                throw Malformed(description: "entry log \(id) is in the order but neither known nor new")
            }
            logs.append(info)
        }
        m.entryLogs = logs
        let ledgerCount = try r.count(each: 9)
        m.ledgers.reserveCapacity(m.ledgers.count + (kind == .snapshot ? ledgerCount : 0))
        for _ in 0..<ledgerCount {
            let id = try r.u64()
            switch try r.u8() {
            case 0: m.ledgers.restore(id, nil)
            case 1: m.ledgers.restore(id, try r.ledgerState())
            default: throw Malformed(description: "ledger \(id)'s presence byte is neither 0 nor 1")
            }
        }
        guard r.remaining == 0 else { throw Malformed(description: "\(r.remaining) bytes after the last field") }
    }

    /// Big-endian fields of one body, read in place (no copy of a hundred-megabyte snapshot, no generic code
    /// per field: a million ledgers read in well under a second). Running out of bytes throws, never traps.
    private struct BodyReader {
        let raw: UnsafeRawBufferPointer
        var at: Int
        let end: Int
        var remaining: Int { end - at }

        private mutating func take(_ n: Int) throws(Malformed) -> Int {
            guard n <= end - at else { throw Malformed(description: "the body ends early at byte \(at)") }
            defer { at += n }
            return at
        }

        mutating func u8() throws(Malformed) -> UInt8 { raw[try take(1)] }
        mutating func u32() throws(Malformed) -> UInt32 { raw.loadBigEndian(UInt32.self, at: try take(4)) }
        mutating func u64() throws(Malformed) -> UInt64 { raw.loadBigEndian(UInt64.self, at: try take(8)) }

        /// A count, refused when the bytes left cannot hold that many items of at least `each` bytes (so a
        /// damaged count never asks for a huge array).
        mutating func count(each: Int) throws(Malformed) -> Int {
            let n = Int(try u32())
            guard n <= remaining / each else { throw Malformed(description: "a count of \(n) exceeds the bytes left") }
            return n
        }

        mutating func directory(_ directories: Int) throws(Malformed) -> Int {
            let d = Int(try u32())
            guard d < directories else {
                throw Malformed(description: "ledger directory #\(d + 1) is named, but \(directories) are configured")
            }
            return d
        }

        mutating func size() throws(Malformed) -> Int {
            let v = try u64()
            guard v <= UInt64(Int.max) else { throw Malformed(description: "a size of \(v) bytes") }
            return Int(v)
        }

        mutating func entryLog(_ directories: Int) throws(Malformed) -> EntryLogInfo {
            let id = try u64()
            let dir = try directory(directories)
            let total = try size(), data = try size()
            var ledgers: [(UInt64, EntryLogLedgerRange)] = []
            let n = try count(each: 40)
            ledgers.reserveCapacity(n)
            for _ in 0..<n {
                let ledger = try u64()
                let range = EntryLogLedgerRange(first: Int64(bitPattern: try u64()), last: Int64(bitPattern: try u64()),
                                                count: try size(), bytes: try size())
                guard range.first >= 0, range.first <= range.last, range.count > 0 else {
                    throw Malformed(description: "entry log \(id) gives ledger \(ledger) an impossible range")
                }
                ledgers.append((ledger, range))
            }
            return EntryLogInfo(id: id, directory: dir, totalBytes: total, dataBytes: data,
                                ledgers: LedgerRanges(listed: ledgers))
        }

        mutating func ledgerState() throws(Malformed) -> LedgerState {
            var s = LedgerState(keyWords: try u64(), try u64(), try u32())
            switch try u8() {
            case 0: s.fenced = false
            case 1: s.fenced = true
            default: throw Malformed(description: "a fenced flag is neither 0 nor 1")
            }
            s.explicitLAC = Int64(bitPattern: try u64())
            s.piggybackLAC = Int64(bitPattern: try u64())
            s.lastEntry = Int64(bitPattern: try u64())
            return s
        }
    }
}
