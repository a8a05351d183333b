/// The stored form of `LedgerMetadata`, big-endian:
///
///     "DLLM"  magic
///     u16     format (1)
///     u8 E, u8 Qw, u8 Qa, u8 digest type, u8 state, u8 0
///     i64 last entry, u64 length, i64 creation time (ms since the epoch)
///     u8 n + n bytes                          password hash
///     u16 fragments × (i64 first entry, u8 bookies × (u8 n + n bytes))
///     u16 custom × (u16 n + key bytes, u32 n + value bytes)   sorted by key, so equal metadata encodes equally
///     u32     CRC32C of everything before it
///
/// A reader refuses a newer format by name instead of guessing at it; fields a future format adds go
/// before the CRC, behind a bumped format number.
public enum LedgerMetadataCodec {
    public static let magic: [UInt8] = Array("DLLM".utf8)
    public static let format: UInt16 = 1

    public struct Failure: Error, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { "ledger metadata: \(message)" }
    }

    /// Encodes sound metadata; encoding metadata with a `problem` is a programmer error.
    public static func encode(_ metadata: LedgerMetadata) -> [UInt8] {
        precondition(metadata.problem == nil, "encoding unsound ledger metadata: \(metadata.problem ?? "")")
        var out = magic
        out.appendBigEndian(format)
        out += [UInt8(metadata.ensembleSize), UInt8(metadata.writeQuorum), UInt8(metadata.ackQuorum),
                metadata.digestType.rawValue, metadata.state.rawValue, 0]
        out.appendBigEndian(metadata.lastEntry.rawValue)
        out.appendBigEndian(metadata.length)
        out.appendBigEndian(metadata.creationTime)
        out.append(UInt8(metadata.passwordHash.count))
        out += metadata.passwordHash
        out.appendBigEndian(UInt16(metadata.fragments.count))
        for fragment in metadata.fragments {
            out.appendBigEndian(fragment.firstEntry.rawValue)
            out.append(UInt8(fragment.bookies.count))
            for bookie in fragment.bookies {
                let bytes = Array(bookie.rawValue.utf8)
                out.append(UInt8(bytes.count))
                out += bytes
            }
        }
        out.appendBigEndian(UInt16(metadata.custom.count))
        for (key, value) in metadata.custom.sorted(by: { $0.key < $1.key }) {
            let bytes = Array(key.utf8)
            out.appendBigEndian(UInt16(bytes.count))
            out += bytes
            out.appendBigEndian(UInt32(value.count))
            out += value
        }
        out.appendBigEndian(CRC32C.checksum(out))
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws(Failure) -> LedgerMetadata {
        guard bytes.count >= magic.count + 2 + 4, Array(bytes.prefix(4)) == magic else {
            throw Failure(message: "not ledger metadata (no DLLM magic)")
        }
        var reader = Reader(bytes: bytes.dropLast(4))
        let stored = bytes.withUnsafeBytes { $0.loadBigEndian(UInt32.self, at: bytes.count - 4) }
        guard CRC32C.checksum(Array(bytes.dropLast(4))) == stored else { throw Failure(message: "checksum mismatch") }
        reader.position = 4
        let version = try reader.read(UInt16.self)
        guard version <= format else {
            throw Failure(message: "format \(version) was written by a newer dlog (this one reads up to \(format)); upgrade")
        }
        let e = Int(try reader.read(UInt8.self)), qw = Int(try reader.read(UInt8.self)), qa = Int(try reader.read(UInt8.self))
        guard let digest = LedgerMetadata.DigestType(rawValue: try reader.read(UInt8.self)) else {
            throw Failure(message: "unknown digest type")
        }
        guard let state = LedgerMetadata.State(rawValue: try reader.read(UInt8.self)) else {
            throw Failure(message: "unknown state")
        }
        _ = try reader.read(UInt8.self)
        let lastEntry = EntryID(try reader.read(Int64.self))
        let length = try reader.read(UInt64.self)
        let created = try reader.read(Int64.self)
        let password = try reader.bytes(Int(try reader.read(UInt8.self)))
        var fragments: [LedgerMetadata.Fragment] = []
        for _ in 0..<Int(try reader.read(UInt16.self)) {
            let first = EntryID(try reader.read(Int64.self))
            var bookies: [BookieID] = []
            for _ in 0..<Int(try reader.read(UInt8.self)) {
                bookies.append(BookieID(String(decoding: try reader.bytes(Int(try reader.read(UInt8.self))), as: UTF8.self)))
            }
            fragments.append(.init(firstEntry: first, bookies: bookies))
        }
        var custom: [String: [UInt8]] = [:]
        for _ in 0..<Int(try reader.read(UInt16.self)) {
            let key = String(decoding: try reader.bytes(Int(try reader.read(UInt16.self))), as: UTF8.self)
            custom[key] = try reader.bytes(Int(try reader.read(UInt32.self)))
        }
        guard reader.position == reader.bytes.endIndex else {
            throw Failure(message: "\(reader.bytes.endIndex - reader.position) unexpected bytes before the checksum")
        }
        let metadata = LedgerMetadata(ensembleSize: e, writeQuorum: qw, ackQuorum: qa, digestType: digest,
                                      passwordHash: password, fragments: fragments, state: state, lastEntry: lastEntry,
                                      length: length, creationTime: created, custom: custom)
        if let problem = metadata.problem { throw Failure(message: problem) }
        return metadata
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>
        var position = 0

        mutating func read<T: FixedWidthInteger>(_ type: T.Type) throws(Failure) -> T {
            let size = MemoryLayout<T>.size
            guard position + size <= bytes.endIndex else { throw Failure(message: "ends early at byte \(position)") }
            var value: T = 0
            for byte in bytes[position..<position + size] { value = value << 8 | T(byte) }
            position += size
            return value
        }

        mutating func bytes(_ count: Int) throws(Failure) -> [UInt8] {
            guard position + count <= bytes.endIndex else { throw Failure(message: "ends early at byte \(position)") }
            defer { position += count }
            return Array(bytes[position..<position + count])
        }
    }
}
