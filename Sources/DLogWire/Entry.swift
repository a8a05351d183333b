/// An entry exactly as a writer sends it, a bookie stores it and a reader gets it back.
///
/// Layout (big-endian):
///
///     offset  size  field
///     0       8     ledger id
///     8       8     entry id
///     16      8     writer's last-add-confirmed when it sent this entry (-1: none)
///     24      8     ledger length in bytes after this entry (cumulative)
///     32      4     CRC32C over bytes 0..<32 and the payload
///     36      n     payload
///
/// The bookie checks the CRC on add (a corrupt entry is refused) and again on every read, so a bit flipped
/// on its disk is reported rather than served.
public struct EntryHeader: Hashable, Sendable {
    public static let byteCount = 36
    public var ledger: LedgerID
    public var entry: EntryID
    public var lastAddConfirmed: EntryID
    public var ledgerLength: UInt64

    public init(ledger: LedgerID, entry: EntryID, lastAddConfirmed: EntryID, ledgerLength: UInt64) {
        self.ledger = ledger
        self.entry = entry
        self.lastAddConfirmed = lastAddConfirmed
        self.ledgerLength = ledgerLength
    }
}

public enum EntryError: Error, Equatable, CustomStringConvertible {
    case tooShort(count: Int)
    case checksumMismatch(ledger: LedgerID, entry: EntryID, stored: UInt32, computed: UInt32)

    public var description: String {
        switch self {
        case .tooShort(let count):
            return "entry of \(count) bytes is shorter than its \(EntryHeader.byteCount)-byte header"
        case .checksumMismatch(let ledger, let entry, let stored, let computed):
            return "entry \(ledger)/\(entry) fails its CRC32C (stored \(hex(stored)), computed \(hex(computed)))"
        }
    }
}

func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

public enum EntryCodec {
    /// Builds the wire/storage form of an entry with its CRC.
    public static func encode(_ header: EntryHeader, payload: some Collection<UInt8>) -> [UInt8] {
        // Byte arrays and buffers are copied as one block: the element-by-element path of a generic collection
        // (this function is not specialized for its callers' types) was 3% of a bookie client's CPU at 100 B.
        let contiguous = payload.withContiguousStorageIfAvailable {
            encode(header, payloadBytes: UnsafeRawBufferPointer($0))
        }
        if let contiguous { return contiguous }
        return Array(payload).withUnsafeBytes { encode(header, payloadBytes: $0) }
    }

    /// The entry built in one allocation, its header stored in place: appending field by field checked the
    /// array's capacity at each, and was a third of this function's cost in a bookie client at 100 B.
    static func encode(_ header: EntryHeader, payloadBytes payload: UnsafeRawBufferPointer) -> [UInt8] {
        let count = EntryHeader.byteCount + payload.count
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: header.ledger.rawValue.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: UInt64(bitPattern: header.entry.rawValue).bigEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: UInt64(bitPattern: header.lastAddConfirmed.rawValue).bigEndian, toByteOffset: 16,
                           as: UInt64.self)
            raw.storeBytes(of: header.ledgerLength.bigEndian, toByteOffset: 24, as: UInt64.self)
            raw.storeBytes(of: UInt32(0), toByteOffset: 32, as: UInt32.self)
            if payload.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: raw[EntryHeader.byteCount...]).copyMemory(from: payload)
            }
            let crc = checksum(of: UnsafeRawBufferPointer(raw))
            raw.storeBytes(of: crc.bigEndian, toByteOffset: 32, as: UInt32.self)
            initialized = count
        }
    }

    /// Parses the header without checking the CRC, for bytes that were verified already (on add, or by the
    /// journal record that carried them). nil when too short.
    public static func header(of bytes: [UInt8]) -> EntryHeader? {
        guard bytes.count >= EntryHeader.byteCount else { return nil }
        return bytes.withUnsafeBytes { raw in
            EntryHeader(ledger: LedgerID(raw.loadBigEndian(UInt64.self, at: 0)),
                        entry: EntryID(Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: 8))),
                        lastAddConfirmed: EntryID(Int64(bitPattern: raw.loadBigEndian(UInt64.self, at: 16))),
                        ledgerLength: raw.loadBigEndian(UInt64.self, at: 24))
        }
    }

    /// Parses the header and verifies the CRC; throws when the bytes are not an intact entry.
    public static func validate(_ bytes: UnsafeRawBufferPointer) throws(EntryError) -> EntryHeader {
        guard bytes.count >= EntryHeader.byteCount else { throw .tooShort(count: bytes.count) }
        let header = EntryHeader(
            ledger: LedgerID(bytes.loadBigEndian(UInt64.self, at: 0)),
            entry: EntryID(Int64(bitPattern: bytes.loadBigEndian(UInt64.self, at: 8))),
            lastAddConfirmed: EntryID(Int64(bitPattern: bytes.loadBigEndian(UInt64.self, at: 16))),
            ledgerLength: bytes.loadBigEndian(UInt64.self, at: 24))
        let stored = bytes.loadBigEndian(UInt32.self, at: 32)
        let computed = checksum(of: bytes)
        guard stored == computed else {
            throw .checksumMismatch(ledger: header.ledger, entry: header.entry, stored: stored, computed: computed)
        }
        return header
    }

    public static func validate(_ bytes: [UInt8]) throws(EntryError) -> EntryHeader {
        do {
            return try bytes.withUnsafeBytes { raw in try validate(raw) }
        } catch let error as EntryError {
            throw error
        } catch {
            preconditionFailure("validate throws only EntryError")
        }
    }

    /// The payload of an intact entry.
    public static func payload(of bytes: [UInt8]) -> ArraySlice<UInt8> { bytes[EntryHeader.byteCount...] }

    /// CRC over the 32 header bytes before the CRC field, then the payload.
    static func checksum(of bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { checksum(of: $0) } }

    static func checksum(of raw: UnsafeRawBufferPointer) -> UInt32 {
        let head = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<32]))
        return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[EntryHeader.byteCount...]), seed: head)
    }
}
