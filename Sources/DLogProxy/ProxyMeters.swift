import CoreMetrics
import Dispatch
import DLogWire

/// The proxy's service times by operation, from a request's decoding to its answer (for a write: the records
/// batched into an entry and acknowledged by the ledger's ack quorum), through swift-metrics like the bookie's.
public final class ProxyMeters: Sendable {
    private let requests: [UInt8: Timer]

    public init(factory: any MetricsFactory, dimensions: [(String, String)] = []) {
        var requests: [UInt8: Timer] = [:]
        for op in ProxyOp.allCases {
            requests[op.rawValue] = Timer(label: "dlog_proxy_request_duration_seconds",
                                          dimensions: dimensions + [("op", op.metricName)], factory: factory)
        }
        self.requests = requests
    }

    /// Now, for `answered(_:since:)`: the monotonic clock in nanoseconds.
    public static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    func answered(_ op: ProxyOp, since received: UInt64) {
        requests[op.rawValue]?.recordNanoseconds(Int64(Self.now &- received))
    }
}

extension ProxyOp: CaseIterable {
    public static let allCases: [ProxyOp] = [.write, .writeBulk, .truncate, .create, .delete, .getOwner, .release, .heartbeat]

    /// The operation's name as a metric label.
    public var metricName: String {
        switch self {
        case .write: "write"
        case .writeBulk: "write_bulk"
        case .truncate: "truncate"
        case .create: "create"
        case .delete: "delete"
        case .getOwner: "get_owner"
        case .release: "release"
        case .heartbeat: "heartbeat"
        }
    }
}
