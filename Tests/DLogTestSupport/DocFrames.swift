import DLogWire
import NIOCore

/// The bytes an encoder writes into a buffer, for holding against a document's worked example.
public func docEncoded(_ encode: (inout ByteBuffer) -> Void) -> [UInt8] {
    var buffer = ByteBuffer()
    encode(&buffer)
    return buffer.readBytes(length: buffer.readableBytes)!
}

/// The one frame a worked example holds, decoded by the real frame decoder. Throws when the bytes are not a
/// whole frame, or hold more than one.
public func docFrame(_ bytes: [UInt8]) throws -> Frame {
    var buffer = ByteBuffer(bytes: bytes)
    guard let frame = try FrameDecoder.next(from: &buffer, maxFrameBytes: 64 << 20) else {
        throw DocExamples.Problem(description: "the example's \(bytes.count) bytes are not a whole frame")
    }
    guard buffer.readableBytes == 0 else {
        throw DocExamples.Problem(description: "the example holds \(buffer.readableBytes) bytes after its one frame")
    }
    return frame
}
