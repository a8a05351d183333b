import DLogWire

/// The payload of one ledger entry of a log segment: a batch of records. Big-endian:
///
///     u8  format (1)
///     u8  codec (0: records stored as they are)
///     u16 0
///     i64 position of the first record within the segment (records before this entry)
///     u32 record count
///     records × (u8 flags, i64 txid, u32 payload length, payload)
///
/// Flags: 0x01 control (never delivered to readers), 0x02 end of stream (the log is sealed after it). The
/// entry around it carries a CRC32C over all of this, so the batch has none of its own.
public enum RecordBatch {
    public static let format: UInt8 = 1
    public static let headerBytes = 16
    public static let recordHeaderBytes = 13

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
        /// Bytes this record takes in a batch.
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

    public static func encode(_ records: [Record], firstPosition: Int64) -> [UInt8] {
        precondition(firstPosition >= 0 && !records.isEmpty, "a batch holds records at a position in the segment")
        var out: [UInt8] = []
        out.reserveCapacity(headerBytes + records.reduce(0) { $0 + $1.encodedBytes })
        out += [format, 0, 0, 0]
        out.appendBigEndian(firstPosition)
        out.appendBigEndian(UInt32(records.count))
        for record in records {
            out.append(record.flags)
            out.appendBigEndian(record.txid)
            out.appendBigEndian(UInt32(record.payload.count))
            out += record.payload
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(Malformed) -> Decoded {
        var reader = ByteReader(bytes)
        do {
            let version = try reader.read(UInt8.self)
            guard version == format else {
                throw Malformed(message: version > format
                    ? "format \(version) was written by a newer dlog (this one reads \(format)); upgrade"
                    : "unknown format \(version)")
            }
            let codec = try reader.read(UInt8.self)
            guard codec == 0 else { throw Malformed(message: "unknown codec \(codec)") }
            _ = try reader.read(UInt16.self)
            let first = try reader.read(Int64.self)
            let count = Int(try reader.read(UInt32.self))
            // Each record takes at least its header: a count that cannot fit is damage, not a reason to allocate.
            guard first >= 0, count >= 1, count <= reader.remaining / recordHeaderBytes else {
                throw Malformed(message: "impossible header (first position \(first), \(count) records in \(bytes.count) bytes)")
            }
            var records: [Record] = []
            records.reserveCapacity(count)
            for _ in 0..<count {
                let flags = try reader.read(UInt8.self)
                let txid = try reader.read(Int64.self)
                let length = Int(try reader.read(UInt32.self))
                records.append(Record(flags: flags, txid: txid, payload: try reader.read(count: length)))
            }
            guard reader.remaining == 0 else { throw Malformed(message: "\(reader.remaining) bytes after the last record") }
            return Decoded(firstPosition: first, records: records)
        } catch let short as ByteReader.Short {
            throw Malformed(message: short.description)
        } catch let malformed as Malformed {
            throw malformed
        } catch {
            throw Malformed(message: "\(error)")
        }
    }
}
