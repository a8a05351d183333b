import CoreMetrics
import Dispatch

/// What a ledger client sees, through swift-metrics (an application's own backend, or the daemon's registry for
/// the proxy's and the bookies' recovery clients): how long an add took to be confirmed by its ack quorum, how
/// long a read took, how long an ensemble change (replacing failed bookies) held the writer's adds, and how long a
/// replication worker took to re-replicate a ledger.
public final class LedgerMeters: Sendable {
    let add: Timer
    let read: Timer
    let ensembleChange: Timer
    let ledgerRepair: Timer

    public init(factory: any MetricsFactory, dimensions: [(String, String)] = []) {
        add = Timer(label: "dlog_client_add_duration_seconds", dimensions: dimensions, factory: factory)
        read = Timer(label: "dlog_client_read_duration_seconds", dimensions: dimensions, factory: factory)
        ensembleChange = Timer(label: "dlog_client_ensemble_change_duration_seconds", dimensions: dimensions, factory: factory)
        ledgerRepair = Timer(label: "dlog_recovery_ledger_duration_seconds", dimensions: dimensions, factory: factory)
    }

    /// The monotonic clock in nanoseconds.
    static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    static func since(_ start: UInt64) -> Int64 { Int64(now &- start) }
}
