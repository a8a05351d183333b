import DLogWire

// # Journal on-disk format (version 1)
//
// A journal directory holds a fixed pool of pre-written files `journal-NNNN.dlj` of `journal_file_bytes`
// each. Files are filled by writing zeros when created and recycled after a checkpoint, because overwriting
// already-written blocks makes fdatasync commit data only (no extent or size metadata).
//
// File header, bytes 0..<4096 (big-endian):
//     0   4  magic "DLJN"
//     4   4  format version (1)
//     8   8  file number: grows by one at every roll, across all files of the directory
//     16  8  first sequence number written in this file
//     24  8  previous file number (0 when none)
//     32  8  end offset of the previous file: replay of the previous file stops there
//     40  4  CRC32C of bytes 0..<40
//
// From offset 4096 the file holds batches. A batch is what one group commit writes: it starts on a
// 4096-byte boundary, is padded with zeros to the next one, and is made durable by one write+sync.
//
// Record (every batch starts with a record of kind `batch`):
//     0   4  payload length n
//     4   4  CRC32C of bytes 0..<4 and 8..<(20+n)
//     8   8  sequence number: +1 per record across the whole journal; a batch record carries the
//            sequence number of its first data record and takes none of its own
//     16  1  kind
//     17  3  zero
//     20  n  payload
//
// Batch payload: u32 batch bytes (aligned, from the batch start), u32 record count, u64 durable-through
// (the highest sequence number whose sync had completed when this batch was built).
//
// Replay reads batch by batch from the checkpoint mark. A batch is taken only when its header and every record
// in it check out with the expected sequence numbers: a batch is synced whole, so a partial batch was never
// acknowledged. At the first batch that does not check out:
//   - if a later file exists, the bad batch was synced before that file was started: corruption;
//   - if a later batch in the same file has a valid header, a sequence number past the bad one and a
//     durable-through that covers it, the bad batch had been synced: corruption;
//   - otherwise it is the torn or stale tail: replay ends there.
// Corruption stops the bookie with the file and offset; the operator flag `--journal-truncate-corrupt`
// turns it into the end of replay instead. After replay, writing resumes in a new file whose header names
// where replay of the previous one ended, so the decision is final and later replays repeat it.
enum JournalFormat {
    static let magic: UInt32 = 0x444C_4A4E  // "DLJN"
    static let version: UInt32 = 1
    static let headerBytes = 4096
    static let alignment = 4096
    static let recordHeaderBytes = 20
    static let batchPayloadBytes = 16
}

/// What a journal record says.
public enum JournalRecordKind: UInt8, Sendable {
    case batch = 1
    /// An entry as the client sent it (EntryCodec layout).
    case add = 2
    /// ledger u64 + master key (20 bytes): the first add of a ledger records its key.
    case masterKey = 3
    /// ledger u64 + master key (20 bytes): the ledger is fenced (the key creates the ledger's state when
    /// the fence is the first this bookie hears of it).
    case fence = 4
    /// ledger u64 + lac i64: explicit LAC from the writer.
    case explicitLAC = 5
    /// ledger u64: the ledger was deleted.
    case delete = 6
}

public struct JournalRecord: Sendable {
    public var kind: JournalRecordKind
    public var payload: [UInt8]
    public init(kind: JournalRecordKind, payload: [UInt8]) {
        precondition(kind != .batch, "batch records are the journal's own")
        self.kind = kind
        self.payload = payload
    }

    var encodedBytes: Int { JournalFormat.recordHeaderBytes + payload.count }
}

/// A place in a journal: replay from a mark re-applies everything after it.
public struct JournalPosition: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public var fileNumber: UInt64
    public var offset: Int64
    /// Sequence number of the next record after this position.
    public var nextSeq: UInt64

    public static func < (a: Self, b: Self) -> Bool { a.nextSeq < b.nextSeq }
    public var description: String { "file \(fileNumber) offset \(offset) seq \(nextSeq)" }
}

struct JournalFileHeader: Equatable {
    var fileNumber: UInt64
    var firstSeq: UInt64
    var previousFileNumber: UInt64
    var previousEndOffset: Int64

    func encode(into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= JournalFormat.headerBytes)
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        raw.storeBigEndian(JournalFormat.magic, at: 0)
        raw.storeBigEndian(JournalFormat.version, at: 4)
        raw.storeBigEndian(fileNumber, at: 8)
        raw.storeBigEndian(firstSeq, at: 16)
        raw.storeBigEndian(previousFileNumber, at: 24)
        raw.storeBigEndian(UInt64(bitPattern: previousEndOffset), at: 32)
        raw.storeBigEndian(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<40])), at: 40)
    }

    /// nil when the bytes are not an intact header (a new, torn or foreign file).
    static func decode(_ raw: UnsafeRawBufferPointer) -> JournalFileHeader? {
        guard raw.count >= 44, raw.loadBigEndian(UInt32.self, at: 0) == JournalFormat.magic,
              raw.loadBigEndian(UInt32.self, at: 4) == JournalFormat.version,
              raw.loadBigEndian(UInt32.self, at: 40) == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<40]))
        else { return nil }
        return JournalFileHeader(fileNumber: raw.loadBigEndian(UInt64.self, at: 8),
                                 firstSeq: raw.loadBigEndian(UInt64.self, at: 16),
                                 previousFileNumber: raw.loadBigEndian(UInt64.self, at: 24),
                                 previousEndOffset: Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: 32)))
    }
}

/// Encoding and checking of records inside a batch buffer.
enum JournalRecordCodec {
    /// Writes a record at `offset` of `raw`; returns the bytes used.
    static func write(kind: JournalRecordKind, seq: UInt64, payload: UnsafeRawBufferPointer,
                      into raw: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        let total = JournalFormat.recordHeaderBytes + payload.count
        precondition(offset + total <= raw.count, "journal record overflows its buffer")
        raw.storeBigEndian(UInt32(payload.count), at: offset)
        raw.storeBigEndian(seq, at: offset + 8)
        raw.storeBigEndian(UInt32(kind.rawValue) << 24, at: offset + 16)
        if payload.count > 0 {
            (raw.baseAddress! + offset + JournalFormat.recordHeaderBytes).copyMemory(from: payload.baseAddress!,
                                                                                   byteCount: payload.count)
        }
        raw.storeBigEndian(checksum(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + total)])), at: offset + 4)
        return total
    }

    struct Parsed {
        var kind: UInt8
        var seq: UInt64
        var payload: UnsafeRawBufferPointer
        var totalBytes: Int
    }

    /// Parses the record at `offset`; nil when it is cut off or fails its CRC.
    static func read(_ raw: UnsafeRawBufferPointer, at offset: Int) -> Parsed? {
        guard offset >= 0, offset + JournalFormat.recordHeaderBytes <= raw.count else { return nil }
        let length = Int(raw.loadBigEndian(UInt32.self, at: offset))
        guard length <= raw.count - offset - JournalFormat.recordHeaderBytes else { return nil }
        let total = JournalFormat.recordHeaderBytes + length
        let record = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + total)])
        guard raw.loadBigEndian(UInt32.self, at: offset + 4) == checksum(record) else { return nil }
        return Parsed(kind: UInt8(raw.loadBigEndian(UInt32.self, at: offset + 16) >> 24),
                      seq: raw.loadBigEndian(UInt64.self, at: offset + 8),
                      payload: UnsafeRawBufferPointer(rebasing: record[JournalFormat.recordHeaderBytes...]),
                      totalBytes: total)
    }

    /// CRC of the length field and everything after the CRC field.
    static func checksum(_ record: UnsafeRawBufferPointer) -> UInt32 {
        let head = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[0..<4]))
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[8...]), seed: head)
    }
}

struct BatchInfo: Equatable {
    var batchBytes: Int
    var recordCount: Int
    var durableThrough: UInt64

    func encode() -> [UInt8] {
        var out = [UInt8]()
        out.appendBigEndian(UInt32(batchBytes))
        out.appendBigEndian(UInt32(recordCount))
        out.appendBigEndian(durableThrough)
        return out
    }

    static func decode(_ p: JournalRecordCodec.Parsed) -> BatchInfo? {
        guard p.kind == JournalRecordKind.batch.rawValue, p.payload.count == JournalFormat.batchPayloadBytes else {
            return nil
        }
        let info = BatchInfo(batchBytes: Int(p.payload.loadBigEndian(UInt32.self, at: 0)),
                             recordCount: Int(p.payload.loadBigEndian(UInt32.self, at: 4)),
                             durableThrough: p.payload.loadBigEndian(UInt64.self, at: 8))
        guard info.batchBytes >= JournalFormat.alignment, info.batchBytes % JournalFormat.alignment == 0 else {
            return nil
        }
        return info
    }
}
