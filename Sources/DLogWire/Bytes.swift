// Big-endian helpers for the fixed fields of our formats.

extension Array where Element == UInt8 {
    @inlinable
    public mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    @inlinable
    public func loadBigEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "read past the end of a buffer")
        return T(bigEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable
    public func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "write past the end of a buffer")
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }
}

/// Reads big-endian fields from the front of a byte array, for the decoders of our stored formats. Running out
/// of bytes throws `ByteReader.Short`, naming the offset, never traps: stored bytes may be damaged.
public struct ByteReader {
    public struct Short: Error, Hashable, CustomStringConvertible {
        public var offset: Int
        public var description: String { "ends early at byte \(offset)" }
    }

    public let bytes: [UInt8]
    public private(set) var offset: Int
    public var remaining: Int { bytes.count - offset }

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public mutating func read<T: FixedWidthInteger>(_ type: T.Type) throws(Short) -> T {
        let size = MemoryLayout<T>.size
        guard offset + size <= bytes.count else { throw Short(offset: offset) }
        var value: T = 0
        for index in offset..<offset + size { value = value << 8 | T(bytes[index]) }
        offset += size
        return value
    }

    public mutating func read(count: Int) throws(Short) -> [UInt8] {
        guard count >= 0, offset + count <= bytes.count else { throw Short(offset: offset) }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}
