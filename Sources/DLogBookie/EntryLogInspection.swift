import DLogIO
import DLogWire

/// What one entry-log file of a stopped bookie holds, read only: its entries by ledger, each read and checked
/// against its CRC, and the damaged ones with their offsets (`dlogctl inspect entrylog`).
public enum EntryLogInspection {
    public struct Ledger: Codable, Sendable, Equatable {
        public var ledger: UInt64
        public var first: Int64
        public var last: Int64
        public var entries: Int
        public var bytes: Int
    }

    public struct Damaged: Codable, Sendable, Equatable {
        public var ledger: UInt64
        public var entry: Int64
        public var offset: Int64
        public var reason: String
    }

    public struct Report: Codable, Sendable, Equatable {
        public var path: String
        public var version: UInt32
        public var bytes: Int64
        public var entries: Int
        public var ledgers: [Ledger]
        public var damaged: [Damaged]
    }

    /// Throws, naming the file and what is wrong, when it cannot be opened or its header, footer or index is
    /// damaged (a bookie rebuilds such an index from the records at start); damaged entries are in the report.
    public static func inspect(path: String, disk: any Disk = PosixDisk()) throws -> Report {
        guard disk.exists(path) else { throw JournalInspection.Refusal(description: "\(path) does not exist") }
        guard let version = EntryLogReader.version(of: path, disk: disk) else {
            throw JournalInspection.Refusal(description: "\(path) is not an entry log, or its header is damaged "
                                            + "(wrong magic, version or CRC)")
        }
        let reader = try EntryLogReader(path: path, disk: disk)
        let size = try disk.open(path, [.readOnly]).sizeAndClose()
        var ledgers: [UInt64: Ledger] = [:]
        var damaged: [Damaged] = []
        var entries = 0
        for (ledger, entry, offset, length) in try reader.rows() {
            entries += 1
            var range = ledgers[ledger] ?? Ledger(ledger: ledger, first: entry, last: entry, entries: 0, bytes: 0)
            range.first = min(range.first, entry)
            range.last = max(range.last, entry)
            range.entries += 1
            range.bytes += length
            ledgers[ledger] = range
            if let bad = check(reader, ledger: ledger, entry: entry, offset: offset, length: length) { damaged.append(bad) }
        }
        return Report(path: path, version: version, bytes: size, entries: entries,
                      ledgers: ledgers.values.sorted { $0.ledger < $1.ledger }, damaged: damaged)
    }
}

extension EntryLogInspection {
    /// Reads the entry an index row points at and checks its CRC and its ids; nil when it is intact.
    static func check(_ reader: EntryLogReader, ledger: UInt64, entry: Int64, offset: Int64, length: Int) -> Damaged? {
        do {
            let header = try EntryCodec.validate(try reader.readBytes(offset: offset, length: length))
            guard header.ledger.rawValue != ledger || header.entry.rawValue != entry else { return nil }
            return Damaged(ledger: ledger, entry: entry, offset: offset,
                           reason: "holds ledger \(header.ledger.rawValue) entry \(header.entry.rawValue), not what the index says")
        } catch {
            return Damaged(ledger: ledger, entry: entry, offset: offset, reason: "\(error)")
        }
    }
}

extension DiskFile {
    /// The file's size; closes it.
    func sizeAndClose() throws -> Int64 {
        defer { close() }
        return try size()
    }
}
