/// A ledger's id: unique in a cluster, assigned by metadata (or by the caller in tests and benchmarks).
public struct LedgerID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "L\(rawValue)" }
}

/// An entry's position in its ledger, from 0. On the wire `-1` asks for the last entry a bookie holds, and
/// a LAC of `-1` means nothing is confirmed yet.
public struct EntryID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
    public static let none = EntryID(-1)
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "E\(rawValue)" }
}

/// The 20-byte key a ledger's writer proves itself with on every add and fence. Kept as three words, in the
/// key's byte order: every ADD carries one, and an array for it was a heap block per request on both ends.
public struct MasterKey: Hashable, Sendable {
    public static let byteCount = 20
    public let high: UInt64
    public let middle: UInt64
    public let low: UInt32

    public init(high: UInt64, middle: UInt64, low: UInt32) {
        (self.high, self.middle, self.low) = (high, middle, low)
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        (high, middle, low) = bytes.withUnsafeBytes { raw in
            (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
             UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
        }
    }

    /// A key derived from a password, for tools and tests. Real clients derive it from the ledger password.
    public init(password: String) {
        var out = [UInt8](repeating: 0, count: Self.byteCount)
        let utf8 = Array(password.utf8)
        var crc: UInt32 = 0
        for i in 0..<5 {
            crc = CRC32C.checksum(utf8 + [UInt8(i)], seed: crc)
            withUnsafeBytes(of: crc.bigEndian) { raw in
                for j in 0..<4 { out[i * 4 + j] = raw[j] }
            }
        }
        self.init(bytes: out)!
    }

    /// The key's 20 bytes.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.byteCount)
        withUnsafeBytes(of: high.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: middle.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: low.bigEndian) { out.append(contentsOf: $0) }
        return out
    }
}
