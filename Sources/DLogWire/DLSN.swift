/// A record's position in a log: the log segment's sequence number, the entry within that segment's ledger, and
/// the slot within the entry (records are batched into entries). Ordered by that tuple, so it orders records
/// across a whole log. Segment numbers start at 1.
public struct DLSN: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var segment: Int64
    public var entry: Int64
    public var slot: Int64

    public init(segment: Int64, entry: Int64, slot: Int64) {
        self.segment = segment
        self.entry = entry
        self.slot = slot
    }

    /// Before every record of every log.
    public static let initial = DLSN(segment: 1, entry: 0, slot: 0)

    public static func < (a: DLSN, b: DLSN) -> Bool {
        (a.segment, a.entry, a.slot) < (b.segment, b.entry, b.slot)
    }

    /// `segment/entry/slot`, the form tools print and parse.
    public var description: String { "\(segment)/\(entry)/\(slot)" }

    /// Parses `segment/entry/slot` (non-negative, segment ≥ 1); nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, let s = Int64(parts[0]), let e = Int64(parts[1]), let l = Int64(parts[2]),
              s >= 1, e >= 0, l >= 0 else { return nil }
        self.init(segment: s, entry: e, slot: l)
    }

    /// The stored form: format byte 1, then the three fields as big-endian i64 (25 bytes).
    public var bytes: [UInt8] {
        var out: [UInt8] = [1]
        out.appendBigEndian(segment)
        out.appendBigEndian(entry)
        out.appendBigEndian(slot)
        return out
    }

    public struct Malformed: Error, Hashable, CustomStringConvertible {
        public var description: String { "not a stored DLSN (25 bytes, format 1)" }
    }

    public init(bytes: [UInt8]) throws(Malformed) {
        guard bytes.count == 25, bytes[0] == 1 else { throw Malformed() }
        var reader = ByteReader(bytes, offset: 1)
        do {
            self.init(segment: try reader.read(Int64.self), entry: try reader.read(Int64.self), slot: try reader.read(Int64.self))
        } catch {
            throw Malformed()
        }
    }
}
