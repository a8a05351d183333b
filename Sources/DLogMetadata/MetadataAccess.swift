import DLogWire
import Synchronization

/// Who may do what on a metadata role whose port requires TLS (docs/security.md, "Authorization"):
///
/// | operations | principals |
/// |---|---|
/// | `RANGE`, `WATCH`, `CANCEL_WATCH`, `STATS` | any (`monitor` is the read-only role) |
/// | `COMMIT`, `LEASE_GRANT`, `LEASE_KEEPALIVE`, `LEASE_REVOKE` | `bookie`, `proxy`, `metadata`, `admin`, and the applications named in `metadata_writers` |
public struct MetadataAccess: Sendable, Hashable {
    /// Application principals (by name) that may write, as the core library does when it writes logs directly.
    public var writers: Set<String>

    public init(writers: Set<String> = []) {
        self.writers = writers
    }

    /// Whether `principal` may do `op`; a connection without a principal may do nothing.
    public func allows(_ op: MetadataOp, by principal: Principal?) -> Bool {
        guard let principal else { return false }
        switch op {
        case .range, .watch, .cancelWatch, .stats:
            return true
        case .commit, .leaseGrant, .leaseKeepAlive, .leaseRevoke:
            switch principal.role {
            case .bookie, .proxy, .metadata, .admin: return true
            case .client: return writers.contains(principal.name)
            case .monitor: return false
            }
        }
    }

    static func refusal(_ op: MetadataOp, by principal: Principal?) -> String {
        guard let principal else { return "a connection without a principal may not \(op.name)" }
        return "\(principal) may not \(op.name)"
    }
}

extension MetadataOp {
    /// The operation's name in docs/protocol.md.
    public var name: String {
        switch self {
        case .range: return "RANGE"
        case .commit: return "COMMIT"
        case .watch: return "WATCH"
        case .cancelWatch: return "CANCEL_WATCH"
        case .leaseGrant: return "LEASE_GRANT"
        case .leaseKeepAlive: return "LEASE_KEEPALIVE"
        case .leaseRevoke: return "LEASE_REVOKE"
        case .stats: return "STATS"
        }
    }
}

/// Requests refused as PERMISSION_DENIED on one port, counted for metrics.
public final class DeniedCount: Sendable {
    public let count = Atomic<UInt64>(0)
    public init() {}
    public var value: UInt64 { count.load(ordering: .relaxed) }
}
