import CLZ4
import DLogWire

/// The payload of one ledger entry of a log segment: a batch of records. Big-endian:
///
///     u8  format (1)
///     u8  codec (0: records stored as they are, 1: LZ4 block)
///     u16 0
///     i64 position of the first record within the segment (records before this entry)
///     u32 record count
///     u32 bytes of the records as below, before compression
///     records × (u8 flags, i64 txid, u32 payload length, payload), LZ4-compressed as one block with codec 1
///
/// Flags: 0x01 control (never delivered to readers), 0x02 end of stream (the log is sealed after it). The
/// entry around it carries a CRC32C over all of this, so the batch has none of its own. A writer asked for
/// LZ4 stores a batch uncompressed when compressing would not make it smaller.
public enum RecordBatch {
    public static let format: UInt8 = 1
    public static let headerBytes = 20
    public static let recordHeaderBytes = 13
    /// Decompressed records of one entry, at most (an entry fits a bookie frame; this bounds what a damaged
    /// length can make a reader allocate).
    public static let recordsBytesMax = 16 << 20

    public enum Codec: UInt8, Sendable {
        case none = 0
        case lz4 = 1
    }

    public struct Record: Hashable, Sendable {
        public var flags: UInt8
        public var txid: Int64
        public var payload: [UInt8]

        public static let control: UInt8 = 0x01
        public static let endOfStream: UInt8 = 0x02

        public init(flags: UInt8 = 0, txid: Int64, payload: [UInt8]) {
            self.flags = flags
            self.txid = txid
            self.payload = payload
        }

        public var isControl: Bool { flags & Self.control != 0 }
        public var isEndOfStream: Bool { flags & Self.endOfStream != 0 }
        /// Bytes this record takes in a batch (before compression).
        public var encodedBytes: Int { recordHeaderBytes + payload.count }
    }

    public struct Decoded: Hashable, Sendable {
        public var firstPosition: Int64
        public var records: [Record]
        public init(firstPosition: Int64, records: [Record]) {
            self.firstPosition = firstPosition
            self.records = records
        }
    }

    public struct Malformed: Error, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { "record batch: \(message)" }
    }

    public static func encode(_ records: [Record], firstPosition: Int64, codec: Codec = .none) -> [UInt8] {
        precondition(firstPosition >= 0 && !records.isEmpty, "a batch holds records at a position in the segment")
        var body: [UInt8] = []
        body.reserveCapacity(records.reduce(0) { $0 + $1.encodedBytes })
        for record in records {
            body.append(record.flags)
            body.appendBigEndian(record.txid)
            body.appendBigEndian(UInt32(record.payload.count))
            body += record.payload
        }
        var stored = body
        var used = Codec.none
        if codec == .lz4, let compressed = lz4Compress(body), compressed.count < body.count {
            stored = compressed
            used = .lz4
        }
        var out: [UInt8] = [format, used.rawValue, 0, 0]
        out.reserveCapacity(headerBytes + stored.count)
        out.appendBigEndian(firstPosition)
        out.appendBigEndian(UInt32(records.count))
        out.appendBigEndian(UInt32(body.count))
        out += stored
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(Malformed) -> Decoded {
        var header = ByteReader(bytes)
        let (version, codecByte, first, count, bodyBytes): (UInt8, UInt8, Int64, Int, Int)
        do {
            version = try header.read(UInt8.self)
            codecByte = try header.read(UInt8.self)
            _ = try header.read(UInt16.self)
            first = try header.read(Int64.self)
            count = Int(try header.read(UInt32.self))
            bodyBytes = Int(try header.read(UInt32.self))
        } catch {
            throw Malformed(message: error.description)
        }
        guard version == format else {
            throw Malformed(message: version > format
                ? "format \(version) was written by a newer dlog (this one reads \(format)); upgrade"
                : "unknown format \(version)")
        }
        guard let codec = Codec(rawValue: codecByte) else { throw Malformed(message: "unknown codec \(codecByte)") }
        // Each record takes at least its header: a count that cannot fit is damage, not a reason to allocate.
        guard first >= 0, count >= 1, bodyBytes <= recordsBytesMax, count <= bodyBytes / recordHeaderBytes else {
            throw Malformed(message: "impossible header (first position \(first), \(count) records in \(bodyBytes) bytes)")
        }
        // Uncompressed records are read where they are: copying the body first cost a second copy of every
        // byte a reader reads.
        let records: [Record]
        switch codec {
        case .none:
            let stored = bytes.count - headerBytes
            guard stored == bodyBytes else {
                throw Malformed(message: "\(stored) bytes of records, the header says \(bodyBytes)")
            }
            records = try bytes.withUnsafeBytes { raw in
                let body = UnsafeRawBufferPointer(rebasing: raw[headerBytes...])
                return Result { () throws(Malformed) in try Self.records(count, in: body) }
            }.get()
        case .lz4:
            guard let expanded = lz4Decompress(Array(bytes[headerBytes...]), size: bodyBytes) else {
                throw Malformed(message: "LZ4 block does not expand to the \(bodyBytes) bytes the header says")
            }
            records = try expanded.withUnsafeBytes { raw in
                Result { () throws(Malformed) in try Self.records(count, in: raw) }
            }.get()
        }
        return Decoded(firstPosition: first, records: records)
    }

    /// `count` records that must fill `body` exactly. Read with unaligned big-endian loads rather than
    /// `ByteReader`, whose generic reads are not specialized outside its module: they cost a tailing reader
    /// more than the rest of decoding.
    private static func records(_ count: Int, in body: UnsafeRawBufferPointer) throws(Malformed) -> [Record] {
        var records: [Record] = []
        records.reserveCapacity(count)
        var at = 0
        for _ in 0..<count {
            guard body.count - at >= recordHeaderBytes else {
                throw Malformed(message: "records: ends early at byte \(at)")
            }
            let flags = body[at]
            let txid = Int64(bigEndian: body.loadUnaligned(fromByteOffset: at + 1, as: Int64.self))
            let length = Int(UInt32(bigEndian: body.loadUnaligned(fromByteOffset: at + 9, as: UInt32.self)))
            at += recordHeaderBytes
            guard body.count - at >= length else { throw Malformed(message: "records: ends early at byte \(at)") }
            records.append(Record(flags: flags, txid: txid,
                                  payload: Array(UnsafeRawBufferPointer(rebasing: body[at..<at + length]))))
            at += length
        }
        guard at == body.count else { throw Malformed(message: "\(body.count - at) bytes after the last record") }
        return records
    }

    /// One LZ4 block (nil if LZ4 refuses the input, e.g. too large).
    static func lz4Compress(_ input: [UInt8]) -> [UInt8]? {
        guard input.count <= recordsBytesMax else { return nil }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: bound)
        let written = input.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { target in
                source.baseAddress!.withMemoryRebound(to: CChar.self, capacity: input.count) { s in
                    target.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bound) { t in
                        LZ4_compress_default(s, t, Int32(input.count), Int32(bound))
                    }
                }
            }
        }
        guard written > 0 else { return nil }
        out.removeLast(bound - Int(written))
        return out
    }

    /// Expands an LZ4 block that must produce exactly `size` bytes; nil when it does not (damage).
    static func lz4Decompress(_ input: [UInt8], size: Int) -> [UInt8]? {
        guard !input.isEmpty, size > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: size)
        let produced = input.withUnsafeBufferPointer { source in
            out.withUnsafeMutableBufferPointer { target in
                source.baseAddress!.withMemoryRebound(to: CChar.self, capacity: input.count) { s in
                    target.baseAddress!.withMemoryRebound(to: CChar.self, capacity: size) { t in
                        LZ4_decompress_safe(s, t, Int32(input.count), Int32(size))
                    }
                }
            }
        }
        return produced == size ? out : nil
    }
}
