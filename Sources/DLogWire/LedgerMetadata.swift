/// A bookie's identity in the cluster: its advertised `host:port` unless configured otherwise.
/// Printable ASCII without spaces or slashes, so it can be part of a metadata key.
public struct BookieID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { rawValue }

    /// Why `rawValue` cannot name a bookie, or nil when it can.
    public var problem: String? {
        let bytes = rawValue.utf8
        guard !bytes.isEmpty, bytes.count <= 255 else { return "bookie id must be 1...255 bytes" }
        for byte in bytes where byte < 0x21 || byte > 0x7E || byte == UInt8(ascii: "/") {
            return "bookie id \(rawValue.debugDescription) may only hold printable ASCII other than space and '/'"
        }
        return nil
    }
}

/// What the cluster knows about one ledger (DESIGN §6). Every change is a compare-and-set on the version of
/// the key holding it, so two writers or recoverers can never both believe they changed it.
public struct LedgerMetadata: Hashable, Sendable {
    public enum State: UInt8, Sendable {
        case open = 1
        case inRecovery = 2
        case closed = 3
    }

    public enum DigestType: UInt8, Sendable {
        /// CRC32C over header and payload (the entry format's own checksum).
        case crc32c = 1
    }

    /// The bookies that store entries from `firstEntry` until the next fragment's first entry.
    public struct Fragment: Hashable, Sendable {
        public var firstEntry: EntryID
        public var bookies: [BookieID]
        public init(firstEntry: EntryID, bookies: [BookieID]) {
            self.firstEntry = firstEntry
            self.bookies = bookies
        }
    }

    public var ensembleSize: Int
    public var writeQuorum: Int
    public var ackQuorum: Int
    public var digestType: DigestType
    /// A hash of the ledger's password (never the password), so an opener can be told "wrong password".
    public var passwordHash: [UInt8]
    public var fragments: [Fragment]
    public var state: State
    /// The last entry of a closed ledger; `EntryID.none` while open or when empty.
    public var lastEntry: EntryID
    public var length: UInt64
    /// Milliseconds since the Unix epoch.
    public var creationTime: Int64
    public var custom: [String: [UInt8]]

    public init(ensembleSize: Int, writeQuorum: Int, ackQuorum: Int, digestType: DigestType = .crc32c,
                passwordHash: [UInt8], fragments: [Fragment], state: State = .open, lastEntry: EntryID = .none,
                length: UInt64 = 0, creationTime: Int64, custom: [String: [UInt8]] = [:]) {
        self.ensembleSize = ensembleSize
        self.writeQuorum = writeQuorum
        self.ackQuorum = ackQuorum
        self.digestType = digestType
        self.passwordHash = passwordHash
        self.fragments = fragments
        self.state = state
        self.lastEntry = lastEntry
        self.length = length
        self.creationTime = creationTime
        self.custom = custom
    }

    /// Why this metadata is inconsistent, or nil when it is sound. Checked before every write and after
    /// every read.
    public var problem: String? {
        guard ensembleSize >= writeQuorum, writeQuorum >= ackQuorum, ackQuorum >= 1 else {
            return "quorums must satisfy E ≥ Qw ≥ Qa ≥ 1 (E=\(ensembleSize) Qw=\(writeQuorum) Qa=\(ackQuorum))"
        }
        guard ensembleSize <= 64 else { return "ensemble of \(ensembleSize) bookies exceeds 64" }
        // The stored form's length fields: past these the codec could not write it.
        guard passwordHash.count <= 255 else { return "password hash of \(passwordHash.count) bytes exceeds 255" }
        guard fragments.count <= 10_000 else { return "\(fragments.count) fragments exceed 10000" }
        guard custom.count <= 1_000, custom.allSatisfy({ $0.key.utf8.count <= 1024 && $0.value.count <= 65_536 }) else {
            return "custom metadata is limited to 1000 keys of at most 1024 bytes with values of at most 64 KiB"
        }
        guard let first = fragments.first, first.firstEntry == EntryID(0) else {
            return "the first fragment must start at entry 0"
        }
        for (a, b) in zip(fragments, fragments.dropFirst()) where b.firstEntry <= a.firstEntry {
            return "fragments must start at increasing entries (\(a.firstEntry) then \(b.firstEntry))"
        }
        for fragment in fragments {
            guard fragment.bookies.count == ensembleSize, Set(fragment.bookies).count == ensembleSize else {
                return "fragment at \(fragment.firstEntry) must name \(ensembleSize) distinct bookies"
            }
            if let bad = fragment.bookies.lazy.compactMap(\.problem).first { return bad }
        }
        if state != .closed, lastEntry != .none { return "only a closed ledger has a last entry" }
        return nil
    }

    /// The fragment that holds `entry`.
    public func fragment(for entry: EntryID) -> Fragment {
        fragments.last { $0.firstEntry <= entry } ?? fragments[0]
    }
}
