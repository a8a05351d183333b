import DLogIO
import DLogWire

// # Entry-log file format (version 2)
//
// A checkpoint writes the write cache, sorted by (ledger, entry), into one new entry-log file in a ledger
// directory. Files are never modified after they are synced; a file is deleted when none of its ledgers
// is left.
//
//     0      4096   header: magic "DLEL", version u32, file id u64, CRC32C of bytes 0..<16 at 16
//     4096   ...    records, back to back: entry length u32, CRC32C of those 4 length bytes u32, then the
//                   entry exactly as the client sent it (its own CRC inside)
//     index         one 32-byte row per entry, sorted: ledger u64, entry i64, offset u64, length u32, zero u32
//                   (offset and length are the entry's, after its 8-byte record header)
//     summary       every 64th index row's (ledger u64, entry i64): 16 bytes each
//     padding       zeros, so that the file ends on a 4096-byte boundary (files are written with O_DIRECT)
//     footer        last 48 bytes: magic "DLEF", zero u32, index offset u64, row count u64,
//                   summary offset u64, CRC32C of index and summary u32, zero u32, CRC32C of footer 0..<40 u32 + pad
//
// A lookup reads the summary once per file (then keeps it: 16 bytes per 64 entries), and per entry does
// one index read of at most 64 rows (2 KiB) and one read of the entry. Every entry read is checked
// against its own CRC; a damaged index or summary is found by the footer's CRC when the file is opened.
//
// The records make the index redundant: when the footer, index or summary is damaged, `EntryLogRepair`
// walks the records from offset 4096 (a record whose length fails its CRC is skipped by searching for the
// next record that checks) and writes the file anew with a fresh index. Version 1 files (dlogd before 0.7)
// have no record headers; they are read as before, but their index cannot be rebuilt.
enum EntryLogFormat {
    static let magic: UInt32 = 0x444C_454C  // "DLEL"
    static let footerMagic: UInt32 = 0x444C_4546  // "DLEF"
    static let version: UInt32 = 2
    /// Versions this dlogd reads: 1 has no record headers (so no index rebuild).
    static let readableVersions: ClosedRange<UInt32> = 1...2
    static let recordHeaderBytes = 8
    static let headerBytes = 4096
    static let rowBytes = 32
    static let summaryEvery = 64
    static let summaryRowBytes = 16
    static let footerBytes = 48
}

/// Per-ledger contents of one entry-log file, kept in the ledger index.
public struct EntryLogLedgerRange: Codable, Sendable, Equatable {
    public var first: Int64
    public var last: Int64
    public var count: Int
    public var bytes: Int
}

/// One entry-log file as the manifest describes it.
public struct EntryLogInfo: Codable, Sendable, Equatable {
    public var id: UInt64
    public var directory: Int
    public var totalBytes: Int
    /// Bytes of entries written into the file (without its header, index and padding).
    public var dataBytes: Int
    /// Live ledgers only: a deleted ledger is removed from here.
    public var ledgers: LedgerRanges

    public var liveBytes: Int { ledgers.bytes }
    /// Share of the entries still live; a file's fixed overhead does not count against it.
    public var liveFraction: Double { dataBytes == 0 ? 0 : Double(liveBytes) / Double(dataBytes) }
}

enum EntryLogWriter {
    static func fileName(_ id: UInt64) -> String { "entrylog-\(id).log" }

    /// Sequential writer through a 256 KiB aligned buffer. With O_DIRECT the checkpoint's bytes skip the page
    /// cache: no copy into it, no burst of dirty pages for the final fsync to wait on (which would also
    /// delay a journal's sync on a shared device). A journal sync on a shared device still waits behind the
    /// one write in progress: 256 KiB rather than 1 MiB cut the adds' p99 during checkpoints (100 streams x 100
    /// writers through a standalone: 5.7-8.2 ms against 6.6-8.7 ms, alternating rounds).
    private final class Sink {
        let file: any DiskFile
        let buffer = AlignedBuffer(capacity: 256 << 10)
        var offset: Int64 = 0
        init(file: any DiskFile) { self.file = file }

        var position: Int64 { offset + Int64(buffer.count) }

        func append(_ bytes: [UInt8]) throws(SystemError) {
            try bytes.withBytes { raw throws(SystemError) in try append(raw) }
        }

        func append(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
            var done = 0
            while done < bytes.count {
                let n = min(buffer.remaining, bytes.count - done)
                buffer.append(UnsafeRawBufferPointer(rebasing: bytes[done..<(done + n)]))
                done += n
                if buffer.remaining == 0 { try spill() }
            }
        }

        /// The 8 bytes before each entry: its length and the CRC32C of the length's 4 bytes, both big-endian.
        /// Written in place: an array for them was an allocation per entry on every checkpoint.
        func appendRecordHeader(length: Int) throws(SystemError) {
            precondition(length > 0 && length <= Int(UInt32.max))
            var header: (UInt32, UInt32) = (UInt32(length).bigEndian, 0)
            header.1 = withUnsafeBytes(of: &header.0) { CRC32C.checksum($0) }.bigEndian
            guard buffer.remaining >= 8 else {
                return try append(withUnsafeBytes(of: &header) { Array($0) })
            }
            withUnsafeBytes(of: &header) { buffer.append($0) }
            if buffer.remaining == 0 { try spill() }
        }

        /// Writes what is buffered; only the last call may write a partial (then padded) block.
        func spill() throws(SystemError) {
            guard buffer.count > 0 else { return }
            precondition(buffer.count % AlignedBuffer.alignment == 0, "entry-log writes stay block-aligned")
            try file.write(UnsafeRawBufferPointer(buffer.bytes), at: offset)
            offset += Int64(buffer.count)
            buffer.reset()
        }
    }

    /// Writes sorted entries into a new file, syncs it and its directory, and returns its description.
    static func write(id: UInt64, directoryIndex: Int, directory: String,
                      entries: some Collection<(LedgerID, EntryID, [UInt8])>,
                      disk: any Disk) throws(SystemError) -> EntryLogInfo {
        try write(id: id, directoryIndex: directoryIndex, directory: directory, count: entries.count, disk: disk) {
            visit throws(SystemError) in
            for (ledger, entry, bytes) in entries {
                try bytes.withBytes { raw throws(SystemError) in try visit(ledger, entry, raw) }
            }
        }
    }

    /// An entry as `write` visits it: its bytes are lent for the call, not copied.
    typealias EntryVisitor = (LedgerID, EntryID, UnsafeRawBufferPointer) throws(SystemError) -> Void

    /// `write` of the `count` entries `forEachEntry` visits, in order. A checkpoint's entries are lent where the
    /// frozen cache holds them: a copy of each (a retain, and a release once written) touched every entry's
    /// memory from the checkpoint's thread, and was 6% of a bookie's CPU at 32 × 16 adds of 100 B.
    static func write(id: UInt64, directoryIndex: Int, directory: String, count: Int, disk: any Disk,
                      forEachEntry: (_ visit: EntryVisitor) throws(SystemError) -> Void) throws(SystemError)
        -> EntryLogInfo {
        let path = directory + "/" + fileName(id)
        let tmp = path + ".tmp"
        // O_DIRECT where the file system allows it; a plain write elsewhere.
        let file: any DiskFile
        if let direct = try? disk.open(tmp, [.create, .truncate, .direct]) {
            file = direct
        } else {
            file = try disk.open(tmp, [.create, .truncate])
        }
        let sink = Sink(file: file)
        var ledgers = LedgerRanges()
        var dataBytes = 0
        do {
            var header = [UInt8]()
            header.appendBigEndian(EntryLogFormat.magic)
            header.appendBigEndian(EntryLogFormat.version)
            header.appendBigEndian(id)
            header.appendBigEndian(CRC32C.checksum(header))
            header += [UInt8](repeating: 0, count: EntryLogFormat.headerBytes - header.count)
            try sink.append(header)
            var rows = [UInt8]()
            rows.reserveCapacity(count * EntryLogFormat.rowBytes)
            var summary = [UInt8]()
            var i = 0
            try forEachEntry { ledger, entry, bytes throws(SystemError) in
                dataBytes += bytes.count
                try sink.appendRecordHeader(length: bytes.count)
                let offset = sink.position
                try sink.append(bytes)
                rows.appendBigEndian(ledger.rawValue)
                rows.appendBigEndian(entry.rawValue)
                rows.appendBigEndian(UInt64(offset))
                rows.appendBigEndian(UInt32(bytes.count))
                rows.appendBigEndian(UInt32(0))
                if i % EntryLogFormat.summaryEvery == 0 {
                    summary.appendBigEndian(ledger.rawValue)
                    summary.appendBigEndian(entry.rawValue)
                }
                ledgers.add(ledger: ledger.rawValue, entry: entry.rawValue, bytes: bytes.count)
                i += 1
            }
            let indexOffset = sink.position
            try sink.append(rows)
            let summaryOffset = sink.position
            try sink.append(summary)
            // Zeros so that the footer ends the file on a block boundary.
            let used = Int(sink.position % Int64(AlignedBuffer.alignment))
            let pad = (AlignedBuffer.alignment * 2 - used - EntryLogFormat.footerBytes) % AlignedBuffer.alignment
            try sink.append([UInt8](repeating: 0, count: pad))
            var footer = [UInt8]()
            footer.appendBigEndian(EntryLogFormat.footerMagic)
            footer.appendBigEndian(UInt32(0))
            footer.appendBigEndian(UInt64(indexOffset))
            footer.appendBigEndian(UInt64(rows.count / EntryLogFormat.rowBytes))
            footer.appendBigEndian(UInt64(summaryOffset))
            footer.appendBigEndian(CRC32C.checksum(summary, seed: CRC32C.checksum(rows)))
            footer.appendBigEndian(UInt32(0))
            footer.appendBigEndian(CRC32C.checksum(footer))
            footer += [UInt8](repeating: 0, count: EntryLogFormat.footerBytes - footer.count)
            try sink.append(footer)
            try sink.spill()
            try file.sync()
        } catch {
            file.close()
            try? disk.remove(tmp)
            throw error
        }
        file.close()
        do {
            try disk.rename(tmp, path)
            try disk.syncDirectory(directory)
        } catch {
            try? disk.remove(tmp)
            try? disk.remove(path)
            throw error
        }
        return EntryLogInfo(id: id, directory: directoryIndex, totalBytes: Int(sink.offset),
                            dataBytes: dataBytes, ledgers: ledgers)
    }
}

/// Why an entry log, the ledger index or another file a bookie trusts cannot be read.
public struct StorageCorruption: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path) is damaged: \(reason)" }
}

/// An open entry-log file with its summary in memory. Safe to share: it only does positioned reads.
final class EntryLogReader: Sendable {
    let path: String
    private let file: any DiskFile
    private let disk: any Disk
    private let indexOffset: Int64
    private let rowCount: Int
    private let summary: [UInt8]
    /// The file's size when opened: index rows are disk content, so every entry they point at is checked
    /// against it before anything is read or allocated for it.
    private let size: Int64

    /// The format version of an entry-log file from its header, or nil when the header is damaged.
    static func version(of path: String, disk: any Disk) -> UInt32? {
        guard let file = try? disk.open(path, [.readOnly]) else { return nil }
        defer { file.close() }
        guard let header = try? file.read(count: 20, at: 0), header.count == 20 else { return nil }
        return header.withUnsafeBytes { raw in
            guard raw.loadBigEndian(UInt32.self, at: 0) == EntryLogFormat.magic,
                  raw.loadBigEndian(UInt32.self, at: 16) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<16])),
                  EntryLogFormat.readableVersions.contains(raw.loadBigEndian(UInt32.self, at: 4)) else { return nil }
            return raw.loadBigEndian(UInt32.self, at: 4)
        }
    }

    init(path: String, disk: any Disk) throws {
        let file = try disk.open(path, [.readOnly])
        do {
            (indexOffset, rowCount, summary, size) = try Self.load(file, path)
        } catch {
            file.close()  // not yet owned by self: deinit will not run for it
            throw error
        }
        self.file = file
        self.disk = disk
        self.path = path
    }

    /// Checks header and footer, bounds every offset by the file size (the footer is disk content, not
    /// trusted), reads the summary and checks index and summary against their CRC.
    private static func load(_ file: any DiskFile, _ path: String) throws -> (Int64, Int, [UInt8], Int64) {
        let size = try file.size()
        let header = try file.read(count: 20, at: 0)
        guard header.count == 20, header.withUnsafeBytes({ raw in
            raw.loadBigEndian(UInt32.self, at: 0) == EntryLogFormat.magic
                && EntryLogFormat.readableVersions.contains(raw.loadBigEndian(UInt32.self, at: 4))
                && raw.loadBigEndian(UInt32.self, at: 16) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<16]))
        }) else {
            throw StorageCorruption(path: path, reason: "header has the wrong magic, version or CRC")
        }
        guard size >= Int64(EntryLogFormat.headerBytes + EntryLogFormat.footerBytes) else {
            throw StorageCorruption(path: path, reason: "file of \(size) bytes is too short")
        }
        let footerAt = size - Int64(EntryLogFormat.footerBytes)
        let footer = try file.read(count: EntryLogFormat.footerBytes, at: footerAt)
        let (indexOffset, rows64, summaryOffset, crc) = try footer.withUnsafeBytes { raw throws -> (Int64, UInt64, Int64, UInt32) in
            guard raw.loadBigEndian(UInt32.self, at: 0) == EntryLogFormat.footerMagic,
                  raw.loadBigEndian(UInt32.self, at: 40) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<40]))
            else { throw StorageCorruption(path: path, reason: "footer fails its magic or CRC") }
            return (Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: 8)), raw.loadBigEndian(UInt64.self, at: 16),
                    Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: 24)), raw.loadBigEndian(UInt32.self, at: 32))
        }
        // Clamped to the size so that the summary count below cannot overflow; the guard refuses such counts.
        let rowCount = Int(clamping: min(rows64, UInt64(size)))
        let summaryCount = (rowCount + EntryLogFormat.summaryEvery - 1) / EntryLogFormat.summaryEvery
        // `indexOffset <= footerAt` first: the sums below would overflow for an offset near Int64.max.
        guard indexOffset >= Int64(EntryLogFormat.headerBytes), indexOffset <= footerAt,
              rows64 <= UInt64(size) / UInt64(EntryLogFormat.rowBytes),
              summaryOffset == indexOffset + Int64(rowCount * EntryLogFormat.rowBytes),
              summaryOffset + Int64(summaryCount * EntryLogFormat.summaryRowBytes) <= footerAt else {
            throw StorageCorruption(path: path, reason: "footer offsets do not fit the file")
        }
        let summary = try file.read(count: summaryCount * EntryLogFormat.summaryRowBytes, at: summaryOffset)
        let rows = try file.read(count: rowCount * EntryLogFormat.rowBytes, at: indexOffset)
        guard summary.count == summaryCount * EntryLogFormat.summaryRowBytes,
              CRC32C.checksum(summary, seed: CRC32C.checksum(rows)) == crc else {
            throw StorageCorruption(path: path, reason: "index or summary fails its CRC")
        }
        return (indexOffset, rowCount, summary, size)
    }

    /// Throws unless `length` bytes at `offset` lie inside the file: a damaged row must not make a read
    /// allocate up to 4 GiB or reach a negative offset.
    private func checkInFile(offset: Int64, length: Int) throws(StorageCorruption) {
        guard offset >= 0, length >= 0, offset <= size, Int64(length) <= size - offset else {
            throw StorageCorruption(path: path, reason: "index row points at \(length) bytes at offset \(offset), "
                                    + "outside the \(size)-byte file")
        }
    }

    deinit { file.close() }

    private static func key(_ raw: UnsafeRawBufferPointer, _ at: Int) -> (UInt64, Int64) {
        (raw.loadBigEndian(UInt64.self, at: at), Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: at + 8)))
    }

    /// Every index row, in order, read in chunks: (ledger, entry, offset, length).
    func rows(chunk: Int = 4096) throws -> [(UInt64, Int64, Int64, Int)] {
        var out: [(UInt64, Int64, Int64, Int)] = []
        out.reserveCapacity(rowCount)
        var first = 0
        while first < rowCount {
            let n = min(chunk, rowCount - first)
            let bytes = try file.read(count: n * EntryLogFormat.rowBytes,
                                       at: indexOffset + Int64(first * EntryLogFormat.rowBytes))
            guard bytes.count == n * EntryLogFormat.rowBytes else { throw StorageCorruption(path: path, reason: "index ends early") }
            bytes.withUnsafeBytes { raw in
                for i in 0..<n {
                    let at = i * EntryLogFormat.rowBytes
                    out.append((raw.loadBigEndian(UInt64.self, at: at), Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: at + 8)),
                                Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: at + 16)),
                                Int(raw.loadBigEndian(UInt32.self, at: at + 24))))
                }
            }
            first += n
        }
        return out
    }

    func readBytes(offset: Int64, length: Int) throws -> [UInt8] {
        try checkInFile(offset: offset, length: length)
        let bytes = try file.read(count: length, at: offset)
        guard bytes.count == length else { throw StorageCorruption(path: path, reason: "entry at \(offset) cut off") }
        return bytes
    }

    /// The stored bytes of (ledger, entry) and their offset in the file, or nil when this file does not have it.
    func read(ledger: LedgerID, entry: EntryID) throws -> (bytes: [UInt8], offset: Int64)? {
        guard let (_, offset, length) = try locate(ledger, entry) else { return nil }
        try checkInFile(offset: offset, length: length)
        let bytes = try file.read(count: length, at: offset)
        guard bytes.count == length else { throw StorageCorruption(path: path, reason: "entry at \(offset) cut off") }
        return (bytes, offset)
    }

    /// The index row of (ledger, entry) and where its bytes are, or nil when this file does not have it.
    private func locate(_ ledger: LedgerID, _ entry: EntryID) throws -> (row: Int, offset: Int64, length: Int)? {
        let target = (ledger.rawValue, entry.rawValue)
        // Last summary key <= target.
        let block: Int? = summary.withUnsafeBytes { raw in
            var lo = 0, hi = raw.count / EntryLogFormat.summaryRowBytes - 1, found: Int? = nil
            while lo <= hi {
                let mid = (lo + hi) / 2
                if Self.key(raw, mid * EntryLogFormat.summaryRowBytes) <= target { found = mid; lo = mid + 1 } else { hi = mid - 1 }
            }
            return found
        }
        guard let block else { return nil }
        let first = block * EntryLogFormat.summaryEvery
        let count = min(EntryLogFormat.summaryEvery, rowCount - first)
        let rows = try file.read(count: count * EntryLogFormat.rowBytes,
                                  at: indexOffset + Int64(first * EntryLogFormat.rowBytes))
        guard rows.count == count * EntryLogFormat.rowBytes else {
            throw StorageCorruption(path: path, reason: "index ends early")
        }
        return rows.withUnsafeBytes { raw in
            for i in 0..<count where Self.key(raw, i * EntryLogFormat.rowBytes) == target {
                return (first + i, Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: i * EntryLogFormat.rowBytes + 16)),
                        Int(raw.loadBigEndian(UInt32.self, at: i * EntryLogFormat.rowBytes + 24)))
            }
            return nil
        }
    }

    /// Index rows `readRun` reads past the first entry at most.
    static let runRowsMax = 1024

    /// `ledger`'s entries from `first` through at most `last`, for as long as this file holds them back to back
    /// (each id the one after, each record right behind the one before: how a checkpoint writes a ledger) and
    /// they fit in `maxBytes` (the first comes whatever its size). One read for the whole run, not two per entry,
    /// and it bypasses the page cache where the file system allows O_DIRECT: a copy reads a file once, and
    /// through the cache it paid for a kernel copy of every byte and evicted what readers use. Each entry comes
    /// as stored, unchecked, with its offset. Empty when this file does not hold `first`.
    func readRun(ledger: LedgerID, from first: EntryID, through last: EntryID,
                 maxBytes: Int) throws -> [(entry: EntryID, bytes: [UInt8], offset: Int64)] {
        guard first <= last, let start = try locate(ledger, first) else { return [] }
        // Index rows are disk content: the first is checked before any sum with it (the rest are bound to it).
        try checkInFile(offset: start.offset, length: start.length)
        var run = [(entry: first.rawValue, offset: start.offset, length: start.length)]
        var end = start.offset + Int64(start.length)
        let more = min(rowCount - start.row - 1, Int(clamping: last.rawValue &- first.rawValue), Self.runRowsMax)
        if more > 0 && start.length < maxBytes {
            let rows = try file.read(count: more * EntryLogFormat.rowBytes,
                                     at: indexOffset + Int64((start.row + 1) * EntryLogFormat.rowBytes))
            guard rows.count == more * EntryLogFormat.rowBytes else {
                throw StorageCorruption(path: path, reason: "index ends early")
            }
            rows.withUnsafeBytes { raw in
                for i in 0..<more {
                    let at = i * EntryLogFormat.rowBytes
                    let next = run[run.count - 1].entry + 1
                    guard Self.key(raw, at) == (ledger.rawValue, next) else { break }
                    let offset = Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: at + 16))
                    let length = Int(raw.loadBigEndian(UInt32.self, at: at + 24))
                    // Version 1 records have no header: a gap of 0 or 8 bytes is back to back.
                    guard offset >= end, offset - end <= Int64(EntryLogFormat.recordHeaderBytes),
                          offset + Int64(length) - start.offset <= Int64(maxBytes) else { break }
                    run.append((next, offset, length))
                    end = offset + Int64(length)
                }
            }
        }
        try checkInFile(offset: start.offset, length: Int(end - start.offset))
        // O_DIRECT reads whole aligned blocks into an aligned buffer.
        let alignment = Int64(AlignedBuffer.alignment)
        let from = start.offset / alignment * alignment
        let count = Int((end + alignment - 1) / alignment * alignment - from)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: AlignedBuffer.alignment)
        defer { buffer.deallocate() }
        // A descriptor of its own for the run, O_DIRECT where the file system takes it (else the reader's own),
        // closed after it: the readers a storage keeps open hold one descriptor each.
        let direct = try? disk.open(path, [.readOnly, .direct])
        defer { direct?.close() }
        let got = try (direct ?? file).read(into: buffer, at: from)
        guard Int64(got) >= end - from else {
            throw StorageCorruption(path: path, reason: "entries at \(start.offset) cut off")
        }
        return run.map { r in
            let at = Int(r.offset - from)
            return (EntryID(r.entry), Array(buffer[at..<(at + r.length)]), r.offset)
        }
    }

}
