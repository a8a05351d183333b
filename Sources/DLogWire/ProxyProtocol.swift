import NIOCore

/// The proxy role's operations on the common frame (docs/protocol.md, "Proxy role"). Opcodes start at 0x61, so
/// a frame sent to the wrong kind of server is refused as unknown, never misread.
///
/// Field encodings (big-endian): `str` = u16 length + UTF-8; `bytes` = u32 length + bytes; a txid is an i64,
/// `-1` asking the proxy to assign one (wall-clock milliseconds, never below the stream's last txid); a DLSN
/// is its 25-byte stored form.
public enum ProxyOp: UInt8, Sendable {
    case write = 0x61
    case writeBulk = 0x62
    case truncate = 0x63
    case create = 0x64
    case delete = 0x65
    case getOwner = 0x66
    case release = 0x67
    case heartbeat = 0x68
}

/// A response's status. Every non-OK response carries one `str`: the owner's address for `redirect`, a message
/// naming what went wrong for the others.
public enum ProxyStatus: UInt16, Sendable {
    case ok = 0
    /// Another proxy owns the stream: send it there (the body is its address).
    case redirect = 1
    case noSuchLog = 2
    case logExists = 3
    /// A hard rate limit or the proxy's stream limit was reached: slow down or go elsewhere.
    case overCapacity = 4
    case txidOutOfOrder = 5
    case endOfStream = 6
    /// The stream cannot be written here now (ownership moving, the proxy draining, bookies failing): retry.
    case unavailable = 7
    case tooLarge = 8
    case badRequest = 9
    case internalError = 10
    /// The connection's principal may not do this to this stream (TLS required: docs/security.md).
    case permissionDenied = 11
}

public struct ProxyRecord: Hashable, Sendable {
    /// nil: the proxy assigns one.
    public var txid: Int64?
    public var payload: [UInt8]
    public init(txid: Int64? = nil, payload: [UInt8]) {
        self.txid = txid
        self.payload = payload
    }
}

public enum ProxyRequest: Hashable, Sendable {
    case write(stream: String, ProxyRecord)
    case writeBulk(stream: String, [ProxyRecord])
    case truncate(stream: String, before: DLSN)
    case create(stream: String)
    case delete(stream: String)
    case getOwner(stream: String)
    case release(stream: String)
    case heartbeat(stream: String)

    public var op: ProxyOp {
        switch self {
        case .write: return .write
        case .writeBulk: return .writeBulk
        case .truncate: return .truncate
        case .create: return .create
        case .delete: return .delete
        case .getOwner: return .getOwner
        case .release: return .release
        case .heartbeat: return .heartbeat
        }
    }

    public var stream: String {
        switch self {
        case .write(let s, _), .writeBulk(let s, _), .truncate(let s, _), .create(let s), .delete(let s),
             .getOwner(let s), .release(let s), .heartbeat(let s):
            return s
        }
    }
}

public enum ProxyReply: Hashable, Sendable {
    case written(DLSN)
    case writtenBulk([DLSN])
    case done
    /// The owning proxy's address, or nil when no proxy owns the stream.
    case owner(String?)
}

/// A non-OK answer.
public struct ProxyFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public var status: ProxyStatus
    public var message: String
    public init(_ status: ProxyStatus, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { status == .redirect ? "owned by the proxy at \(message)" : message }
}

extension ProxyRequest {
    /// Records per WRITE_BULK, at most.
    public static let bulkRecordsMax = 10_000

    public func encode(requestID: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeFrame(FrameHeader(op: op.rawValue, flagsOrStatus: 0, requestID: requestID)) { body in
            body.writeShortString(stream)
            switch self {
            case .write(_, let record):
                body.writeRecord(record)
            case .writeBulk(_, let records):
                body.writeInteger(UInt32(records.count))
                for record in records { body.writeRecord(record) }
            case .truncate(_, let dlsn):
                body.writeBytes(dlsn.bytes)
            case .create, .delete, .getOwner, .release, .heartbeat:
                break
            }
        }
    }

    /// Parses a request; a malformed body is a `badRequest` failure (the connection goes on).
    public static func decode(_ frame: Frame) throws(ProxyFailure) -> ProxyRequest {
        guard let op = ProxyOp(rawValue: frame.header.op) else {
            throw ProxyFailure(.badRequest, "unknown operation 0x\(String(frame.header.op, radix: 16)) for the proxy role")
        }
        var body = frame.body
        let stream = try body.readShortString("stream name")
        let request: ProxyRequest
        switch op {
        case .write:
            request = .write(stream: stream, try body.readRecord())
        case .writeBulk:
            let count = Int(try body.readProxyField(UInt32.self, "record count"))
            guard (1...bulkRecordsMax).contains(count) else {
                throw ProxyFailure(.badRequest, "a bulk write carries 1...\(bulkRecordsMax) records, not \(count)")
            }
            var records: [ProxyRecord] = []
            for _ in 0..<count { records.append(try body.readRecord()) }
            request = .writeBulk(stream: stream, records)
        case .truncate:
            guard let bytes = body.readBytes(length: 25), let dlsn = try? DLSN(bytes: bytes) else {
                throw ProxyFailure(.badRequest, "truncate: a 25-byte DLSN was expected")
            }
            request = .truncate(stream: stream, before: dlsn)
        case .create: request = .create(stream: stream)
        case .delete: request = .delete(stream: stream)
        case .getOwner: request = .getOwner(stream: stream)
        case .release: request = .release(stream: stream)
        case .heartbeat: request = .heartbeat(stream: stream)
        }
        guard body.readableBytes == 0 else {
            throw ProxyFailure(.badRequest, "\(op) request has \(body.readableBytes) unexpected trailing bytes")
        }
        return request
    }
}

extension ProxyReply {
    public func encode(op: ProxyOp, requestID: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeFrame(FrameHeader(op: op.rawValue | FrameHeader.responseBit, flagsOrStatus: ProxyStatus.ok.rawValue,
                                      requestID: requestID)) { body in
            switch self {
            case .written(let dlsn):
                body.writeBytes(dlsn.bytes)
            case .writtenBulk(let dlsns):
                body.writeInteger(UInt32(dlsns.count))
                for dlsn in dlsns { body.writeBytes(dlsn.bytes) }
            case .done:
                break
            case .owner(let address):
                body.writeShortString(address ?? "")
            }
        }
    }

    /// Parses a response frame to a request of `op`: the reply, or the failure it carries.
    public static func decode(_ frame: Frame, op: ProxyOp) -> Result<ProxyReply, ProxyFailure> {
        var body = frame.body
        guard frame.header.op == op.rawValue | FrameHeader.responseBit else {
            return .failure(ProxyFailure(.badRequest, "answer to operation 0x\(String(frame.header.op, radix: 16)) for a \(op) request"))
        }
        guard frame.header.flagsOrStatus == ProxyStatus.ok.rawValue else {
            let status = ProxyStatus(rawValue: frame.header.flagsOrStatus) ?? .internalError
            let message = (try? body.readShortString("message")) ?? "status \(frame.header.flagsOrStatus)"
            return .failure(ProxyFailure(status, message))
        }
        do {
            let reply: ProxyReply
            switch op {
            case .write:
                reply = .written(try body.readDLSN())
            case .writeBulk:
                let count = Int(try body.readProxyField(UInt32.self, "DLSN count"))
                var dlsns: [DLSN] = []
                for _ in 0..<min(count, ProxyRequest.bulkRecordsMax) { dlsns.append(try body.readDLSN()) }
                reply = .writtenBulk(dlsns)
            case .truncate, .create, .delete, .release:
                reply = .done
            case .getOwner, .heartbeat:
                let address = try body.readShortString("owner")
                reply = .owner(address.isEmpty ? nil : address)
            }
            return .success(reply)
        } catch {
            return .failure(error)
        }
    }
}

extension ProxyFailure {
    public func encode(op: UInt8, requestID: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeFrame(FrameHeader(op: op | FrameHeader.responseBit, flagsOrStatus: status.rawValue,
                                      requestID: requestID)) { body in
            body.writeShortString(String(decoding: Array(message.utf8.prefix(60_000)), as: UTF8.self))
        }
    }
}

extension ByteBuffer {
    mutating func writeShortString(_ text: String) {
        let bytes = Array(text.utf8.prefix(Int(UInt16.max)))
        writeInteger(UInt16(bytes.count))
        writeBytes(bytes)
    }

    mutating func readShortString(_ what: String) throws(ProxyFailure) -> String {
        let length = Int(try readProxyField(UInt16.self, what))
        guard let bytes = readBytes(length: length) else { throw ProxyFailure(.badRequest, "\(what): frame ends early") }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func writeRecord(_ record: ProxyRecord) {
        writeInteger(record.txid ?? -1)
        writeInteger(UInt32(record.payload.count))
        writeBytes(record.payload)
    }

    mutating func readRecord() throws(ProxyFailure) -> ProxyRecord {
        let txid = try readProxyField(Int64.self, "txid")
        let length = Int(try readProxyField(UInt32.self, "payload length"))
        guard let payload = readBytes(length: length) else { throw ProxyFailure(.badRequest, "payload: frame ends early") }
        return ProxyRecord(txid: txid == -1 ? nil : txid, payload: payload)
    }

    mutating func readDLSN() throws(ProxyFailure) -> DLSN {
        guard let bytes = readBytes(length: 25), let dlsn = try? DLSN(bytes: bytes) else {
            throw ProxyFailure(.badRequest, "a 25-byte DLSN was expected")
        }
        return dlsn
    }

    mutating func readProxyField<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws(ProxyFailure) -> T {
        guard let value = readInteger(as: T.self) else { throw ProxyFailure(.badRequest, "\(what): frame ends early") }
        return value
    }
}
