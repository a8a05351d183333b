import CoreMetrics
import Dispatch

/// The metadata role's service times by operation, from a request's decoding to its answer (for a commit:
/// through the store's group commit), through swift-metrics like the bookie's. A watch is not timed: its
/// answers are its events, for as long as it runs.
public final class MetadataMeters: Sendable {
    private let requests: [UInt8: Timer]

    public init(factory: any MetricsFactory, dimensions: [(String, String)] = []) {
        var requests: [UInt8: Timer] = [:]
        for op in MetadataOp.timed {
            requests[op.rawValue] = Timer(label: "dlog_metadata_request_duration_seconds",
                                          dimensions: dimensions + [("op", op.metricName)], factory: factory)
        }
        self.requests = requests
    }

    static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    func answered(_ op: MetadataOp, since received: UInt64) {
        requests[op.rawValue]?.recordNanoseconds(Int64(Self.now &- received))
    }
}

extension MetadataOp {
    /// The operations a request's answer ends (all but `watch`).
    static let timed: [MetadataOp] = [.range, .commit, .cancelWatch, .leaseGrant, .leaseKeepAlive, .leaseRevoke, .stats]

    /// The operation's name as a metric label.
    public var metricName: String {
        switch self {
        case .range: "range"
        case .commit: "commit"
        case .watch: "watch"
        case .cancelWatch: "cancel_watch"
        case .leaseGrant: "lease_grant"
        case .leaseKeepAlive: "lease_keep_alive"
        case .leaseRevoke: "lease_revoke"
        case .stats: "stats"
        }
    }
}
