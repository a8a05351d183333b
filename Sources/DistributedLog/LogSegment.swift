import DLogWire

/// One segment of a log: one ledger, numbered by its segment sequence number (1, 2, …). Only the last segment
/// of a log may be in progress; a completed one records where it ends. Stored in metadata under the log (see
/// `LogKeys`) with `LogSegmentCodec`; every change is a compare-and-set.
public struct LogSegment: Hashable, Sendable {
    public enum State: UInt8, Sendable {
        case inProgress = 1
        case completed = 2
    }

    /// Truncation by the application: whole segments, or the part of one before `minActive`.
    public enum Truncation: Hashable, Sendable {
        case active
        case partiallyTruncated(minActive: DLSN)
        case truncated
    }

    public var sequence: Int64
    public var ledger: LedgerID
    public var state: State
    public var firstTxID: Int64
    /// Records in all earlier segments: the sequence id of this segment's first record.
    public var startSequenceID: Int64
    /// Milliseconds since the epoch.
    public var creationTime: Int64
    /// Set when completed: the last record's txid and position, the number of records (data and control).
    public var lastTxID: Int64 = -1
    public var lastEntry: Int64 = -1
    public var lastSlot: Int64 = -1
    public var recordCount: Int64 = 0
    public var completionTime: Int64 = 0
    public var endOfStream = false
    public var truncation: Truncation = .active

    public init(sequence: Int64, ledger: LedgerID, firstTxID: Int64, startSequenceID: Int64, creationTime: Int64) {
        self.sequence = sequence
        self.ledger = ledger
        self.state = .inProgress
        self.firstTxID = firstTxID
        self.startSequenceID = startSequenceID
        self.creationTime = creationTime
    }

    /// The position of this segment's last record (nil when it holds none, or is in progress).
    public var lastDLSN: DLSN? {
        state == .completed && lastEntry >= 0 ? DLSN(segment: sequence, entry: lastEntry, slot: lastSlot) : nil
    }
}

/// The stored form of `LogSegment`, big-endian:
///
///     "DLSG" magic, u16 format (1)
///     i64 sequence, u64 ledger, u8 state, u8 end of stream, u8 truncation (0 active, 1 partial, 2 truncated), u8 0
///     i64 first txid, i64 start sequence id, i64 creation time
///     i64 last txid, i64 last entry, i64 last slot, i64 record count, i64 completion time
///     25 bytes minimum active DLSN (zeros unless partially truncated)
///     u32 CRC32C of everything before it
public enum LogSegmentCodec {
    public static let magic: [UInt8] = Array("DLSG".utf8)
    public static let format: UInt16 = 1

    public static func encode(_ s: LogSegment) -> [UInt8] {
        var out = magic
        out.appendBigEndian(format)
        out.appendBigEndian(s.sequence)
        out.appendBigEndian(s.ledger.rawValue)
        let truncation: UInt8
        var minActive = [UInt8](repeating: 0, count: 25)
        switch s.truncation {
        case .active: truncation = 0
        case .partiallyTruncated(let dlsn):
            truncation = 1
            minActive = dlsn.bytes
        case .truncated: truncation = 2
        }
        out += [s.state.rawValue, s.endOfStream ? 1 : 0, truncation, 0]
        for field in [s.firstTxID, s.startSequenceID, s.creationTime, s.lastTxID, s.lastEntry, s.lastSlot,
                      s.recordCount, s.completionTime] {
            out.appendBigEndian(field)
        }
        out += minActive
        out.appendBigEndian(CRC32C.checksum(out))
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(StoredFormatError) -> LogSegment {
        var reader = try StoredFormatError.open(bytes, magic: magic, format: format, what: "log segment")
        do {
            let sequence = try reader.read(Int64.self)
            let ledger = LedgerID(try reader.read(UInt64.self))
            guard let state = LogSegment.State(rawValue: try reader.read(UInt8.self)) else {
                throw StoredFormatError("log segment: unknown state")
            }
            let endOfStream = try reader.read(UInt8.self) != 0
            let truncation = try reader.read(UInt8.self)
            _ = try reader.read(UInt8.self)
            var fields: [Int64] = []
            for _ in 0..<8 { fields.append(try reader.read(Int64.self)) }
            let minActive = try reader.read(count: 25)
            guard reader.remaining == 4 else { throw StoredFormatError("log segment: \(reader.remaining - 4) unexpected bytes") }
            var segment = LogSegment(sequence: sequence, ledger: ledger, firstTxID: fields[0], startSequenceID: fields[1],
                                     creationTime: fields[2])
            segment.state = state
            segment.endOfStream = endOfStream
            (segment.lastTxID, segment.lastEntry, segment.lastSlot) = (fields[3], fields[4], fields[5])
            (segment.recordCount, segment.completionTime) = (fields[6], fields[7])
            switch truncation {
            case 0: segment.truncation = .active
            case 1: segment.truncation = .partiallyTruncated(minActive: try DLSN(bytes: minActive))
            case 2: segment.truncation = .truncated
            default: throw StoredFormatError("log segment: unknown truncation state \(truncation)")
            }
            return segment
        } catch let error as StoredFormatError {
            throw error
        } catch {
            throw StoredFormatError("log segment: \(error)")
        }
    }
}

/// A stored record that cannot be decoded: damaged, or written by a newer version.
public struct StoredFormatError: Error, Hashable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }

    /// Checks magic, format and CRC32C (the last 4 bytes); returns a reader positioned after the format.
    static func open(_ bytes: [UInt8], magic: [UInt8], format: UInt16, what: String) throws(StoredFormatError) -> ByteReader {
        guard bytes.count >= magic.count + 6, Array(bytes.prefix(magic.count)) == magic else {
            throw StoredFormatError("\(what): not a stored \(what) (no \(String(decoding: magic, as: UTF8.self)) magic)")
        }
        let stored = bytes.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard CRC32C.checksum(Array(bytes.dropLast(4))) == stored else { throw StoredFormatError("\(what): checksum mismatch") }
        var reader = ByteReader(bytes, offset: magic.count)
        let version = (try? reader.read(UInt16.self)) ?? 0
        guard version <= format else {
            throw StoredFormatError("\(what): format \(version) was written by a newer dlog (this one reads up to \(format)); upgrade")
        }
        return reader
    }
}
