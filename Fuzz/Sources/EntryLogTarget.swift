// Reaches internal decoders through `@testable import`, which only a build with testability allows (debug, or
// the fuzzer build): a release build of the package leaves this target out (FuzzTarget.all).
#if DEBUG || DLOG_FUZZ
@testable import DLogBookie
import DLogIO
import DLogSimulation
import DLogWire

/// `EntryLogReader` (open, `rows`, `read`, `readRun`, `readBytes`: what lookups, READ_RANGE, scrub and compaction
/// do with an entry log from disk) and `EntryLogRepair.walk`, on a file of a `SimulatedDisk`.
///
/// Mode bits of the first byte: 0 the input is the file. 1 structured: the input is id, index offset, row count
/// and summary offset (u64 each), then the bytes from offset 4096 on; the harness writes an intact header and a
/// footer whose CRCs match, so mutations reach the index rows. 2 writes a version 1 header; 4 makes the footer's
/// offsets agree with each other (row count below 256, summary right after the index).
/// Contracts: no trap for any file; rows read in any chunk size are the same; an entry `read` returns is as
/// long as its row says; the walk gives entries with unique keys, sorted, each at least an entry header long.
enum EntryLogTarget {
    static let directory = "/ledgers"
    static let path = directory + "/" + EntryLogWriter.fileName(1)
    /// What the repair walk is told the manifest expects in the file (ledger 7, entries 0...10).
    static let expected = EntryLogInfo(id: 1, directory: 0, totalBytes: 0, dataBytes: 0,
                                       ledgers: [7: EntryLogLedgerRange(first: 0, last: 10, count: 11, bytes: 0)])

    static let target = FuzzTarget(name: "entry-log", run: { bytes in
        let file = build(ModedInput(bytes))
        let disk = SimulatedDisk()
        do {
            try disk.makeDirectory(directory)
            try disk.writeAtomically(path, file)
        } catch {
            fatalError("the simulated disk refused the file: \(error)")
        }
        _ = EntryLogReader.version(of: path, disk: disk)
        if let reader = try? EntryLogReader(path: path, disk: disk) { checkReader(reader) }
        checkWalk(EntryLogRepair.walk(file, expected: expected).entries)
    }, seeds: EntryLogSeeds.all)

    static func checkReader(_ reader: EntryLogReader) {
        guard let rows = try? reader.rows() else { return }
        let small = try? reader.rows(chunk: 3)
        require(small.map { $0.elementsEqual(rows, by: ==) } ?? false, "rows differ by chunk size")
        for (ledger, entry, offset, length) in rows.prefix(64) {
            if let bytes = try? reader.readBytes(offset: offset, length: length) {
                require(bytes.count == length, "readBytes returned \(bytes.count) bytes for a \(length)-byte row")
            }
            if let found = try? reader.read(ledger: LedgerID(ledger), entry: EntryID(entry)) {
                require(rows.contains { $0.0 == ledger && $0.1 == entry && $0.2 == found.offset && $0.3 == found.bytes.count },
                        "read(\(ledger), \(entry)) returned bytes no row of that key describes")
            }
            if entry >= 0, let run = try? reader.readRun(ledger: LedgerID(ledger), from: EntryID(entry),
                                                         through: EntryID(entry &+ 8), maxBytes: 1 << 16) {
                for (i, got) in run.enumerated() {
                    require(got.entry.rawValue == entry + Int64(i), "readRun skipped or repeated an entry id")
                    require(rows.contains { $0.0 == ledger && $0.1 == got.entry.rawValue && $0.2 == got.offset
                                            && $0.3 == got.bytes.count },
                            "readRun(\(ledger), \(entry)) returned bytes no row of that key describes")
                }
            }
        }
    }

    static func checkWalk(_ entries: [(LedgerID, EntryID, [UInt8])]) {
        for (a, b) in zip(entries, entries.dropFirst()) {
            require((a.0.rawValue, a.1.rawValue) < (b.0.rawValue, b.1.rawValue), "the walk's entries are not sorted and unique")
        }
        for (ledger, entry, bytes) in entries {
            let header = EntryCodec.header(of: bytes)
            require(header?.ledger == ledger && header?.entry == entry, "the walk keyed an entry by another entry's header")
        }
    }

    // MARK: The structured layout

    static func build(_ input: ModedInput) -> [UInt8] {
        guard input.mode & 1 != 0 else { return input.rest }
        var fields = ByteReaderFields(input.rest)
        let id = fields.next()
        var indexOffset = fields.next(), rowCount = fields.next(), summaryOffset = fields.next()
        let body = Array(input.rest.dropFirst(32))
        if input.mode & 4 != 0 {
            rowCount %= 256
            indexOffset = UInt64(EntryLogFormat.headerBytes) + indexOffset % UInt64(body.count + 1)
            summaryOffset = indexOffset + rowCount * UInt64(EntryLogFormat.rowBytes)
        }
        var header: [UInt8] = []
        header.appendBigEndian(EntryLogFormat.magic)
        header.appendBigEndian(input.mode & 2 != 0 ? UInt32(1) : EntryLogFormat.version)
        header.appendBigEndian(id)
        header.appendBigEndian(CRC32C.checksum(header))
        var file = header + [UInt8](repeating: 0, count: EntryLogFormat.headerBytes - header.count) + body
        let align = EntryLogFormat.headerBytes
        file += [UInt8](repeating: 0, count: (2 * align - (file.count + EntryLogFormat.footerBytes) % align) % align)
        // The CRC of index and summary as the reader will compute it: over what is in the file of each.
        let summaryCount = (min(rowCount, UInt64(file.count)) + 63) / 64
        let rows = slice(file, at: indexOffset, count: rowCount &* UInt64(EntryLogFormat.rowBytes))
        let summary = slice(file, at: summaryOffset, count: summaryCount * UInt64(EntryLogFormat.summaryRowBytes))
        var footer: [UInt8] = []
        footer.appendBigEndian(EntryLogFormat.footerMagic)
        footer.appendBigEndian(UInt32(0))
        footer.appendBigEndian(indexOffset)
        footer.appendBigEndian(rowCount)
        footer.appendBigEndian(summaryOffset)
        footer.appendBigEndian(CRC32C.checksum(summary, seed: CRC32C.checksum(rows)))
        footer.appendBigEndian(UInt32(0))
        footer.appendBigEndian(CRC32C.checksum(footer))
        return file + footer + [UInt8](repeating: 0, count: EntryLogFormat.footerBytes - footer.count)
    }

    /// The bytes of `file` at `offset`, at most `count` (none when `offset` is past the end).
    static func slice(_ file: [UInt8], at offset: UInt64, count: UInt64) -> [UInt8] {
        guard offset < UInt64(file.count) else { return [] }
        return Array(file[Int(offset)..<Int(offset + min(count, UInt64(file.count) - offset))])
    }
}

/// Big-endian u64 fields from the front of an input, zero past its end.
struct ByteReaderFields {
    var reader: ByteReader
    init(_ bytes: [UInt8]) { reader = ByteReader(bytes) }
    mutating func next() -> UInt64 { (try? reader.read(UInt64.self)) ?? 0 }
}

/// Entry logs written by `EntryLogWriter` on a simulated disk, as whole files and in the structured layout.
enum EntryLogSeeds {
    @Sendable static func all() -> [[UInt8]] {
        let small = write([(7, 0), (7, 1), (7, 2), (9, 0)])
        let twoBlocks = write((0..<70).map { (7, Int64($0)) })
        return [[0] + small, structured(small), structured(twoBlocks), [2 | 1] + structured(small).dropFirst(), [4 | 1] + structured(small).dropFirst()]
    }

    static func write(_ keys: [(UInt64, Int64)]) -> [UInt8] {
        let disk = SimulatedDisk()
        let entries = keys.map { ledger, entry in
            (LedgerID(ledger), EntryID(entry), EntryCodec.encode(EntryHeader(ledger: LedgerID(ledger), entry: EntryID(entry),
                                                                             lastAddConfirmed: EntryID(entry - 1), ledgerLength: 0),
                                                                 payload: Array("e\(entry)".utf8)))
        }
        do {
            try disk.makeDirectory(EntryLogTarget.directory)
            _ = try EntryLogWriter.write(id: 1, directoryIndex: 0, directory: EntryLogTarget.directory, entries: entries, disk: disk)
            return try disk.readAll(EntryLogTarget.path)
        } catch {
            fatalError("writing a seed entry log failed: \(error)")
        }
    }

    /// `file` in the structured layout: the footer's fields, then the bytes from 4096 to the summary's end.
    static func structured(_ file: [UInt8]) -> [UInt8] {
        var footer = ByteReader(Array(file.suffix(EntryLogFormat.footerBytes)), offset: 8)
        var id = ByteReader(file, offset: 8)
        let (index, rows, summary) = ((try? footer.read(UInt64.self)) ?? 0, (try? footer.read(UInt64.self)) ?? 0,
                                      (try? footer.read(UInt64.self)) ?? 0)
        var out: [UInt8] = [1]
        out.appendBigEndian((try? id.read(UInt64.self)) ?? 0)
        out.appendBigEndian(index)
        out.appendBigEndian(rows)
        out.appendBigEndian(summary)
        return out + file[EntryLogFormat.headerBytes..<(Int(summary) + Int((rows + 63) / 64) * 16)]
    }
}
#endif
