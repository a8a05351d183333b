import DLogIO
import DLogWire

/// Rebuilds the index of an entry log (format version 2) from its own records, for a file whose footer,
/// index or summary is damaged. The records are walked from offset 4096; the file is then written anew under
/// the same name (temporary file, fsync, rename, directory fsync), with the damaged original kept as a hard
/// link in `quarantine/` for inspection.
///
/// | what the walk meets | what it does |
/// |---|---|
/// | a record whose length checks and whose entry checks | kept |
/// | a record whose length checks, entry fails its CRC, and whose (ledger, entry) lies in a range the manifest gives this file | kept as it is, so a read of it answers CORRUPT_ENTRY rather than NO_ENTRY |
/// | such a record outside those ranges | skipped and counted as damaged |
/// | bytes that are not a record (a damaged length, or the end of the records) | searched forward for the next record that checks whole; none found ends the walk |
///
/// The walk reads the whole file into memory once: entry logs are as large as one checkpoint (the write
/// cache's size), and a rebuild is rare.
enum EntryLogRepair {
    struct Report: Sendable, Equatable {
        var path: String
        var entries: Int
        /// Records kept although their entry fails its CRC.
        var corruptEntries: Int
        /// Records dropped: unreadable, or outside what the manifest lists.
        var droppedRecords: Int
        /// Entries the manifest counts in this file that the walk did not find, per ledger.
        var missing: [UInt64: Int]
        var quarantinedCopy: String
    }

    static func rebuild(id: UInt64, directoryIndex: Int, directory: String, expected: EntryLogInfo,
                        disk: any Disk) throws -> Report {
        let path = directory + "/" + EntryLogWriter.fileName(id)
        guard let version = EntryLogReader.version(of: path, disk: disk) else {
            throw StorageCorruption(path: path, reason: "its header is damaged too, so its records cannot be found")
        }
        guard version >= 2 else {
            throw StorageCorruption(path: path, reason: "format version \(version) has no record headers, so its "
                                    + "index cannot be rebuilt")
        }
        let bytes = try disk.readAll(path)
        let (entries, corrupt, dropped) = walk(bytes, expected: expected)
        var found: [UInt64: Int] = [:]
        for (ledger, _, _) in entries { found[ledger.rawValue, default: 0] += 1 }
        var missing: [UInt64: Int] = [:]
        for (ledger, range) in expected.ledgers where (found[ledger] ?? 0) < range.count {
            missing[ledger] = range.count - (found[ledger] ?? 0)
        }
        let quarantine = directory + "/" + LedgerStorage.quarantineDirectory
        try disk.makeDirectory(quarantine)
        var copy = quarantine + "/" + EntryLogWriter.fileName(id) + ".damaged"
        var n = 1
        while disk.exists(copy) {
            n += 1
            copy = quarantine + "/" + EntryLogWriter.fileName(id) + ".damaged.\(n)"
        }
        try disk.link(path, copy)
        try disk.syncDirectory(quarantine)
        _ = try EntryLogWriter.write(id: id, directoryIndex: directoryIndex, directory: directory, entries: entries,
                                     disk: disk)
        return Report(path: path, entries: entries.count, corruptEntries: corrupt, droppedRecords: dropped,
                      missing: missing, quarantinedCopy: copy)
    }

    /// The records of a version 2 file, in file order, by the decision table above.
    static func walk(_ bytes: [UInt8], expected: EntryLogInfo) -> (entries: [(LedgerID, EntryID, [UInt8])], corrupt: Int, dropped: Int) {
        let end = max(EntryLogFormat.headerBytes, bytes.count - EntryLogFormat.footerBytes)
        var entries: [(LedgerID, EntryID, [UInt8])] = []
        var corrupt = 0
        var dropped = 0
        var p = EntryLogFormat.headerBytes
        bytes.withUnsafeBytes { raw in
            while p < end {
                switch record(raw, at: p, end: end) {
                case .intact(let length):
                    let entry = Array(raw[(p + 8)..<(p + 8 + length)])
                    let header = EntryCodec.header(of: entry)!
                    entries.append((header.ledger, header.entry, entry))
                    p += 8 + length
                case .corrupt(let length):
                    let entry = Array(raw[(p + 8)..<(p + 8 + length)])
                    let header = EntryCodec.header(of: entry)!
                    if let range = expected.ledgers[header.ledger.rawValue],
                       header.entry.rawValue >= range.first, header.entry.rawValue <= range.last {
                        entries.append((header.ledger, header.entry, entry))
                        corrupt += 1
                    } else {
                        dropped += 1
                    }
                    p += 8 + length
                case .none:
                    // Damage, or the index after the last record: look for the next record that checks whole.
                    var q = p + 1
                    while q < end, !record(raw, at: q, end: end).isIntact { q += 1 }
                    if q < end { dropped += 1 }
                    p = q
                }
            }
        }
        // A damaged key must not break the index's order; the last copy of a key wins, as in a checkpoint.
        var seen = Set<[Int64]>()
        var unique: [(LedgerID, EntryID, [UInt8])] = []
        for e in entries.reversed() where seen.insert([Int64(bitPattern: e.0.rawValue), e.1.rawValue]).inserted {
            unique.append(e)
        }
        unique.sort { ($0.0.rawValue, $0.1.rawValue) < ($1.0.rawValue, $1.1.rawValue) }
        return (unique, corrupt, dropped)
    }

    private enum Record {
        case intact(length: Int)
        case corrupt(length: Int)
        case none

        var isIntact: Bool {
            if case .intact = self { return true }
            return false
        }
    }

    private static func record(_ raw: UnsafeRawBufferPointer, at p: Int, end: Int) -> Record {
        guard p + EntryLogFormat.recordHeaderBytes + EntryHeader.byteCount <= end else { return .none }
        let length = Int(raw.loadBigEndian(UInt32.self, at: p))
        guard raw.loadBigEndian(UInt32.self, at: p + 4) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[p..<(p + 4)])),
              length >= EntryHeader.byteCount, p + 8 + length <= end else { return .none }
        let entry = UnsafeRawBufferPointer(rebasing: raw[(p + 8)..<(p + 8 + length)])
        return (try? EntryCodec.validate(entry)) != nil ? .intact(length: length) : .corrupt(length: length)
    }
}
