import DLogWire

/// The record of one log in metadata: when it was created, the last segment number handed out, the highest
/// txid of any completed segment, and whether the stream was sealed. Starting a segment updates it by
/// compare-and-set in the same transaction that creates the segment, so two writers cannot both start one.
public struct LogInfo: Hashable, Sendable {
    public var creationTime: Int64
    public var lastSegment: Int64 = 0
    public var maxTxID: Int64 = -1
    public var endOfStream = false

    public init(creationTime: Int64) { self.creationTime = creationTime }
}

/// The stored form of `LogInfo`: "DLLG" magic, u16 format (1), i64 creation time, i64 last segment,
/// i64 max txid, u8 end of stream, u32 CRC32C of everything before it.
public enum LogInfoCodec {
    public static let magic: [UInt8] = Array("DLLG".utf8)
    public static let format: UInt16 = 1

    public static func encode(_ info: LogInfo) -> [UInt8] {
        var out = magic
        out.appendBigEndian(format)
        out.appendBigEndian(info.creationTime)
        out.appendBigEndian(info.lastSegment)
        out.appendBigEndian(info.maxTxID)
        out.append(info.endOfStream ? 1 : 0)
        out.appendBigEndian(CRC32C.checksum(out))
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(StoredFormatError) -> LogInfo {
        var reader = try StoredFormatError.open(bytes, magic: magic, format: format, what: "log record")
        do {
            var info = LogInfo(creationTime: try reader.read(Int64.self))
            info.lastSegment = try reader.read(Int64.self)
            info.maxTxID = try reader.read(Int64.self)
            info.endOfStream = try reader.read(UInt8.self) != 0
            guard reader.remaining == 4 else { throw StoredFormatError("log record: \(reader.remaining - 4) unexpected bytes") }
            return info
        } catch let error as StoredFormatError {
            throw error
        } catch {
            throw StoredFormatError("log record: \(error)")
        }
    }
}
