import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Logging
import Synchronization
import Testing

/// One entry log of three ledgers (300 entries of varied sizes); returns its path and the index's offset.
private func oneFile(_ dir: String) throws -> (path: String, indexOffset: Int) {
    let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir]), journalCount: 1)
    var records = [keyRecord(1), keyRecord(2), keyRecord(3)]
    for l in 1...3 { for e in 0..<100 { records.append(addRecord(UInt64(l), Int64(e), size: 10 + (e * 37) % 400)) } }
    s.apply(records, journal: 0, through: nil)
    _ = try s.checkpoint()
    let path = dir + "/entrylog-1.log"
    let bytes = try FileSystem.readAll(path)
    let indexOffset = bytes.withUnsafeBytes { Int($0.loadBigEndian(UInt64.self, at: bytes.count - 48 + 8)) }
    return (path, indexOffset)
}

private func flip(_ path: String, at offset: Int) throws {
    var bytes = try FileSystem.readAll(path)
    bytes[offset] ^= 0x10
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func everyEntryReads(_ s: LedgerStorage) throws -> Bool {
    for l in 1...3 {
        for e in 0..<100 where try read(s, UInt64(l), Int64(e)) != entry(UInt64(l), Int64(e), size: 10 + (e * 37) % 400) {
            return false
        }
    }
    return true
}

@Suite struct EntryLogRepairTests {
    /// The defect: one flipped bit in an entry log's index made the whole file unreadable. Now the first read
    /// rebuilds the index from the file's own records: every entry reads back, the damaged original is kept
    /// in quarantine/, and one repair is reported (not one error per read).
    @Test func aDamagedIndexIsRebuiltFromTheRecords() throws {
        for damage in ["index", "footer"] {
            let dir = TempDir()
            let (path, indexOffset) = try oneFile(dir.path)
            let size = try FileSystem.readAll(path).count
            try flip(path, at: damage == "index" ? indexOffset + 40 : size - 48 + 9)
            let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
            #expect(try everyEntryReads(s), "\(damage)")
            let repairs = s.takeRepairs()
            #expect(repairs.count == 1)
            #expect(repairs.first?.report.entries == 300 && repairs.first?.report.missing == [:])
            #expect(FileSystem.exists(dir.path + "/quarantine/entrylog-1.log.damaged"))
            // The rebuilt file is whole again: a fresh start opens it without any repair.
            let again = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
            #expect(try everyEntryReads(again))
            #expect(again.takeRepairs().isEmpty)
        }
    }

    /// The walk over the records skips a record whose length was damaged (finding the next intact record),
    /// and keeps a record whose entry fails its CRC, so that a read of it reports corruption, not absence.
    @Test func theWalkSkipsDamagedLengthsAndKeepsCorruptEntries() throws {
        let dir = TempDir()
        let (path, indexOffset) = try oneFile(dir.path)
        var bytes = try FileSystem.readAll(path)
        let storage = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.path]), journalCount: 1)
        let info = try #require(storage.ledgers.catalog.withLock { $0.manifest.entryLogs.first })
        // The first record's length (at 4096), and a payload byte of the third record.
        let length = { (at: Int) in bytes.withUnsafeBytes { Int($0.loadBigEndian(UInt32.self, at: at)) } }
        let second = 4096 + 8 + length(4096)
        let third = second + 8 + length(second)
        bytes[4096 + 2] ^= 0x01
        bytes[third + 8 + EntryHeader.byteCount] ^= 0x01
        let (entries, corrupt, dropped) = EntryLogRepair.walk(bytes, expected: info)
        #expect(entries.count == 299, "only the first entry is lost, with its length")
        #expect(corrupt == 1 && dropped == 1)
        #expect(entries.first?.0 == LedgerID(1) && entries.first?.1 == EntryID(1))
        #expect((try? EntryCodec.validate(entries[0].2)) != nil)
        #expect((try? EntryCodec.validate(entries[1].2)) == nil, "the corrupt entry is kept as it is")
        #expect(indexOffset > third)
    }

    /// A version 2 file written by a checkpoint has its records where the format says: each entry follows an
    /// 8-byte header of its length and that length's CRC32C, and the index points past the header.
    @Test func recordsAreFramedAsDocumented() throws {
        let dir = TempDir()
        let (path, indexOffset) = try oneFile(dir.path)
        let bytes = try FileSystem.readAll(path)
        bytes.withUnsafeBytes { raw in
            #expect(raw.loadBigEndian(UInt32.self, at: 4) == 2, "format version")
            let length = Int(raw.loadBigEndian(UInt32.self, at: 4096))
            #expect(raw.loadBigEndian(UInt32.self, at: 4100) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[4096..<4100])))
            #expect(length == EntryHeader.byteCount + 10)
            #expect(raw.loadBigEndian(UInt64.self, at: indexOffset + 16) == 4104, "the first row's offset")
            #expect(Int(raw.loadBigEndian(UInt32.self, at: indexOffset + 24)) == length)
        }
    }

    /// A damaged payload answers CORRUPT_ENTRY naming the entry-log file and the offset; a file whose index
    /// cannot be rebuilt answers IO_ERROR with the reason, logged once for the file, not once per read.
    @Test func damageIsReportedByFileAndOffsetAndLoggedOnce() throws {
        let dir = TempDir()
        let ledgers = dir.sub("ledgers")
        let lines = LogLines()
        var config = Bookie.Configuration(
            journal: .init(directory: dir.sub("journal"), fileBytes: 2 << 20, filesMax: 4, engine: .blocking),
            journalDirectories: [dir.sub("journal")], storage: .init(ledgerDirectories: [ledgers]))
        config.checkpointInterval = .seconds(3600)
        do {
            let b = try Bookie(configuration: config, logger: Logger(label: "test") { _ in lines.handler() })
            try b.start { Issue.record("journal failed: \($0)") }
            b.storage.apply([keyRecord(1)] + (0..<10).map { addRecord(1, Int64($0), size: 200) }, journal: 0, through: nil)
            _ = try b.storage.checkpoint()
            b.stop()
        }
        let path = ledgers + "/entrylog-1.log"
        try flip(path, at: 4096 + 8 + EntryHeader.byteCount + 5)  // entry 0's payload
        do {
            let b = try Bookie(configuration: config, logger: Logger(label: "test") { _ in lines.handler() })
            try b.start { Issue.record("journal failed: \($0)") }
            defer { b.stop() }
            guard case .failed(.corruptEntry, let message) = b.readEntryBlocking(ledger: LedgerID(1), entry: EntryID(0)) else {
                Issue.record("damaged payload not reported as corrupt")
                return
            }
            #expect(message.contains("\(path) offset 4104"))
            #expect(lines.matching("stored entry is corrupt").first?.contains("\(path) offset 4104") == true)
        }
        // Damage the header and the footer too: the index can be neither read nor rebuilt.
        try flip(path, at: 1)
        try flip(path, at: (try FileSystem.readAll(path)).count - 40)
        let b = try Bookie(configuration: config, logger: Logger(label: "test") { _ in lines.handler() })
        try b.start { Issue.record("journal failed: \($0)") }
        defer { b.stop() }
        for e in 0..<10 {
            guard case .failed(.ioError, let message) = b.readEntryBlocking(ledger: LedgerID(1), entry: EntryID(Int64(e))) else {
                Issue.record("entry \(e) of an unrebuildable file not answered IO_ERROR")
                continue
            }
            #expect(message.contains(path) && message.contains("cannot be found"))
        }
        #expect(lines.matching("entry read failed").count == 1, "\(lines.matching("entry read failed"))")
        #expect(b.infoJSON().contains("\"unreadableEntryLogs\":[\"entrylog-1.log: "), "GET_INFO names the unreadable file")
    }
}

/// Log lines captured from a `Logger`, for tests that check what was logged.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])

    func handler() -> LogHandler { Handler(sink: self) }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    func matching(_ text: String) -> [String] { lines.withLock { $0.filter { $0.contains(text) } } }

    struct Handler: LogHandler {
        let sink: LogLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            sink.append("\(event.level) \(event.message) "
                        + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
    }
}
