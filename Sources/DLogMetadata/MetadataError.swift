/// Every failure the metadata contract can report. Backends map their own errors onto these so callers handle
/// one set, whichever store is behind the URI.
public enum MetadataError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A compare-and-set found another version than the one expected.
    case versionConflict(key: String, expected: Version, actual: Version)
    /// A create found the key already there.
    case keyExists(key: String)
    /// An update or delete expected the key to exist, and it does not.
    case noSuchKey(key: String)
    /// The lease expired or was revoked (or never existed).
    case leaseExpired(LeaseID)
    /// The store could not be reached or is shutting down; the operation may or may not have applied. Retryable.
    case unavailable(String)
    /// A watch asked for history the store no longer keeps.
    case compacted(requested: Revision, oldest: Revision)
    /// A key, value, transaction or range exceeds a limit.
    case tooLarge(String)
    /// The request itself is wrong (bad key, bad TTL, unknown operation).
    case invalidArgument(String)
    /// The store failed in a way that is not the caller's doing (disk error, protocol violation by the peer).
    case internalError(String)
    /// The connection's principal may not do this (the message names both; docs/security.md, "Authorization").
    case permissionDenied(String)

    public var isRetryable: Bool {
        if case .unavailable = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .versionConflict(let key, let expected, let actual):
            return "version conflict on \(key): expected version \(expected), found \(actual)"
        case .keyExists(let key):
            return "key \(key) already exists"
        case .noSuchKey(let key):
            return "key \(key) does not exist"
        case .leaseExpired(let lease):
            return "\(lease) has expired or was revoked"
        case .unavailable(let why):
            return "metadata store unavailable: \(why)"
        case .compacted(let requested, let oldest):
            return "revision \(requested) has been compacted; the oldest revision kept is \(oldest)"
        case .tooLarge(let what):
            return "too large: \(what)"
        case .invalidArgument(let what):
            return "invalid argument: \(what)"
        case .internalError(let what):
            return "metadata store error: \(what)"
        case .permissionDenied(let what):
            return "permission denied: \(what)"
        }
    }

    /// The error a failed check reports, by what was expected and found.
    public static func failedCheck(key: String, expected: Version, actual: Version) -> MetadataError {
        if expected == .absent { return .keyExists(key: key) }
        if actual == .absent { return .noSuchKey(key: key) }
        return .versionConflict(key: key, expected: expected, actual: actual)
    }
}
