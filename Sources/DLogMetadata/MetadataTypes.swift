/// The values the metadata contract speaks in.
///
/// Versions are store revisions: every committed change advances the store's revision by one, and a key's
/// version is the revision of the change that last wrote it. So a version is never reused, not even after a
/// delete and re-create, and a compare-and-set that succeeds proves nobody wrote the key in between.
/// `Version.absent` (0) stands for "the key does not exist".

/// A store-wide revision: the count of committed changes so far.
public struct Revision: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
    public static let zero = Revision(0)
    public static func < (a: Revision, b: Revision) -> Bool { a.rawValue < b.rawValue }
    public var next: Revision { Revision(rawValue + 1) }
    public var description: String { String(rawValue) }
}

/// The revision at which a key was last written; `absent` when the key does not exist.
public struct Version: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
    public init(_ revision: Revision) { self.rawValue = revision.rawValue }
    public static let absent = Version(0)
    public static func < (a: Version, b: Version) -> Bool { a.rawValue < b.rawValue }
    public var description: String { rawValue == 0 ? "absent" : String(rawValue) }
}

/// A lease: keys written under it vanish when it expires or is revoked.
public struct LeaseID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
    public var description: String { "lease \(rawValue)" }
}

public struct Lease: Hashable, Sendable {
    public var id: LeaseID
    /// Whole seconds, as granted (etcd may round a short TTL up to its minimum).
    public var ttlSeconds: Int
    public init(id: LeaseID, ttlSeconds: Int) {
        self.id = id
        self.ttlSeconds = ttlSeconds
    }
}

public struct KeyValue: Hashable, Sendable {
    public var key: String
    public var value: [UInt8]
    public var version: Version
    /// The revision that created this incarnation of the key.
    public var createRevision: Revision
    public var lease: LeaseID?

    public init(key: String, value: [UInt8], version: Version, createRevision: Revision, lease: LeaseID? = nil) {
        self.key = key
        self.value = value
        self.version = version
        self.createRevision = createRevision
        self.lease = lease
    }
}

/// Keys from `start` (inclusive) to `end` (exclusive) in byte order; `end == nil` means just `start`.
public struct KeyRange: Hashable, Sendable {
    public var start: String
    public var end: String?

    public init(start: String, end: String?) {
        self.start = start
        self.end = end
    }

    public static func key(_ key: String) -> KeyRange { KeyRange(start: key, end: nil) }

    /// Every key that begins with `prefix`. Keys are printable ASCII, so bumping the last byte gives the
    /// first key after the prefix's block without leaving ASCII.
    public static func prefix(_ prefix: String) -> KeyRange {
        var bytes = Array(prefix.utf8)
        precondition(!bytes.isEmpty && bytes.last! < 0x7F, "prefixes are non-empty printable ASCII")
        bytes[bytes.count - 1] += 1
        return KeyRange(start: prefix, end: String(decoding: bytes, as: UTF8.self))
    }

    public func contains(_ key: String) -> Bool {
        guard let end else { return key == start }
        return key.utf8.lexicographicallyPrecedes(end.utf8) && !key.utf8.lexicographicallyPrecedes(start.utf8)
    }

    /// The range left after `key`, for continuing a scan that stopped there.
    public func after(_ key: String) -> KeyRange {
        KeyRange(start: key + "\u{0}", end: end)
    }
}

public struct RangePage: Hashable, Sendable {
    public var items: [KeyValue]
    /// More keys are in the range past the last item.
    public var more: Bool
    /// The store's revision when the page was read: a watch from `revision.next` misses nothing after it.
    public var revision: Revision

    public init(items: [KeyValue], more: Bool, revision: Revision) {
        self.items = items
        self.more = more
        self.revision = revision
    }
}

/// An all-or-none change: every check must hold, then every operation applies at one new revision.
public struct Transaction: Hashable, Sendable {
    public struct Check: Hashable, Sendable {
        public var key: String
        /// `.absent` requires the key not to exist.
        public var version: Version
        public init(key: String, version: Version) {
            self.key = key
            self.version = version
        }
    }

    public enum Operation: Hashable, Sendable {
        case put(key: String, value: [UInt8], lease: LeaseID?)
        case delete(key: String)

        public var key: String {
            switch self {
            case .put(let key, _, _), .delete(let key): return key
            }
        }
    }

    public var checks: [Check]
    public var operations: [Operation]

    public init(checks: [Check] = [], operations: [Operation] = []) {
        self.checks = checks
        self.operations = operations
    }
}

public struct WatchEvent: Hashable, Sendable {
    public enum Kind: UInt8, Sendable {
        case put = 1
        case delete = 2
    }

    public var kind: Kind
    public var key: String
    /// Empty for deletes.
    public var value: [UInt8]
    /// The revision of the change; for a put also the key's new version.
    public var revision: Revision

    public init(kind: Kind, key: String, value: [UInt8], revision: Revision) {
        self.kind = kind
        self.key = key
        self.value = value
        self.revision = revision
    }
}
