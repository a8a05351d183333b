import NIOCore

/// The frame every message travels in (docs/protocol.md has the full specification).
///
///     u32  length of everything after this field (12 + body)
///     u8   protocol version (1)
///     u8   operation; a response sets the top bit (0x80 | op)
///     u16  request: flags; response: status code
///     u64  request id, chosen by the client, echoed in the response
///     ...  body
public struct FrameHeader: Hashable, Sendable {
    public static let version: UInt8 = 1
    /// Bytes after the length field that every frame has.
    public static let fixedByteCount = 12
    public static let responseBit: UInt8 = 0x80

    public var version: UInt8
    public var op: UInt8
    public var flagsOrStatus: UInt16
    public var requestID: UInt64

    public init(version: UInt8 = FrameHeader.version, op: UInt8, flagsOrStatus: UInt16, requestID: UInt64) {
        self.version = version
        self.op = op
        self.flagsOrStatus = flagsOrStatus
        self.requestID = requestID
    }

    public var isResponse: Bool { op & Self.responseBit != 0 }
}

public struct Frame: Sendable {
    public var header: FrameHeader
    public var body: ByteBuffer
    public init(header: FrameHeader, body: ByteBuffer) {
        self.header = header
        self.body = body
    }
}

public enum FrameError: Error, Equatable, CustomStringConvertible {
    case tooLarge(length: Int, max: Int)
    case tooShort(length: Int)
    case unsupportedVersion(UInt8)

    public var description: String {
        switch self {
        case .tooLarge(let length, let max):
            // A TLS record (content type 20–23, then version 3.x) read as a frame's length: the two ends disagree
            // about TLS, which deserves its own words.
            if (0x14...0x17).contains(length >> 24) && (length >> 16) & 0xFF == 3 {
                return "the peer speaks TLS and this side does not (a client: give --tls-ca, or set tls_mode and the tls_* files; a port: set tls_mode = optional or required)"
            }
            return "frame of \(length) bytes exceeds the limit of \(max)"
        case .tooShort(let length): return "frame of \(length) bytes is shorter than the 12-byte header"
        case .unsupportedVersion(let v): return "protocol version \(v) is not supported (this side speaks 1)"
        }
    }
}

/// Splits a byte stream into frames. The length is checked against the limit before any body is buffered,
/// so a hostile length never makes us allocate.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame
    public let maxFrameBytes: Int

    public init(maxFrameBytes: Int) {
        precondition(maxFrameBytes >= FrameHeader.fixedByteCount)
        self.maxFrameBytes = maxFrameBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.next(from: &buffer, maxFrameBytes: maxFrameBytes) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// The decoding step on its own, so tests can feed it bytes without a channel.
    public static func next(from buffer: inout ByteBuffer, maxFrameBytes: Int) throws(FrameError) -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let frameLength = Int(length)
        guard frameLength <= maxFrameBytes else { throw .tooLarge(length: frameLength, max: maxFrameBytes) }
        guard frameLength >= FrameHeader.fixedByteCount else { throw .tooShort(length: frameLength) }
        guard buffer.readableBytes >= 4 + frameLength else { return nil }
        // The fixed fields in one read (length checked above), as `writeFrame` writes them.
        let (_, version, op, flags, requestID) = buffer.readMultipleIntegers(as: (UInt32, UInt8, UInt8, UInt16, UInt64).self)!
        guard version == FrameHeader.version else { throw .unsupportedVersion(version) }
        let body = buffer.readSlice(length: frameLength - FrameHeader.fixedByteCount)!
        return Frame(header: FrameHeader(version: version, op: op, flagsOrStatus: flags, requestID: requestID),
                     body: body)
    }
}

extension ByteBuffer {
    /// Writes a whole frame: length, header, then `body` bytes written by the closure.
    /// The fixed fields go in as one write: field by field, each paid its own capacity and uniqueness checks,
    /// on every request and answer.
    public mutating func writeFrame(_ header: FrameHeader, body: (inout ByteBuffer) -> Void) {
        let lengthIndex = writerIndex
        writeMultipleIntegers(UInt32(0), header.version, header.op, header.flagsOrStatus, header.requestID)
        body(&self)
        let length = writerIndex - lengthIndex - 4
        setInteger(UInt32(length), at: lengthIndex)
    }
}
