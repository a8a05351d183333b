import CoreMetrics
import Dispatch
import DLogWire

/// The bookie's distributions, recorded through swift-metrics into the factory it was given (the daemon's
/// Prometheus registry; an embedding program's own backend; by default whatever `MetricsSystem` was bootstrapped
/// with). Service time runs from a request's decoding to its answer being handed to the connection: for an ADD
/// that includes the journal's group commit, for a long poll its wait.
public final class BookieMeters: Sendable {
    /// Service time by operation; a long poll (READ_LAC that waits) is its own operation, `long_poll`.
    private let requests: [Timer]
    let longPoll: Timer

    /// `dimensions` go on every series (a standalone's bookies are told apart by them).
    public init(factory: any MetricsFactory, dimensions: [(String, String)] = []) {
        let label = "dlog_bookie_request_duration_seconds"
        // Indexed by raw value less one: the operations are numbered from 1 without gaps.
        precondition(BookieOp.allCases.map(\.rawValue) == Array(1...UInt8(BookieOp.allCases.count)))
        requests = BookieOp.allCases.map { Timer(label: label, dimensions: dimensions + [("op", $0.metricName)], factory: factory) }
        longPoll = Timer(label: label, dimensions: dimensions + [("op", "long_poll")], factory: factory)
    }

    /// A request of `op` that arrived at `received` (`now`) was answered at `answered`: its service time.
    func answered(_ op: BookieOp, longPoll: Bool, received: UInt64, at answered: UInt64) {
        let nanoseconds = Int64(answered &- received)
        if longPoll {
            self.longPoll.recordNanoseconds(nanoseconds)
        } else {
            requests[Int(op.rawValue) - 1].recordNanoseconds(nanoseconds)
        }
    }

    /// Now, for service times: the monotonic clock in nanoseconds.
    static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }
}

extension BookieOp {
    /// The operation's name as a metric label: lower case, words joined by `_`.
    public var metricName: String {
        switch self {
        case .add: "add"
        case .read: "read"
        case .readLAC: "read_lac"
        case .writeLAC: "write_lac"
        case .deleteLedger: "delete_ledger"
        case .getInfo: "get_info"
        case .listEntries: "list_entries"
        case .ledgerKey: "ledger_key"
        case .readRange: "read_range"
        case .addBatch: "add_batch"
        }
    }
}
