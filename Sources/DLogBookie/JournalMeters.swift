import CoreMetrics
import Dispatch

/// A journal's distributions, through swift-metrics like `BookieMeters`: how long records waited in the queue
/// for a batch (each time the writer takes records, the wait of the oldest it takes), how long each write+sync took, and the records and bytes each group commit carried (the batching
/// the journal achieved).
public final class JournalMeters: Sendable {
    let sync: Timer
    let queueWait: Timer
    let batchRecords: Recorder
    let batchBytes: Recorder

    /// Record sizes by powers of two, for `batchRecords`; bytes by powers of four from 4 KiB, for `batchBytes`
    /// (a factory may take them as the buckets of each: see `RoleRegistry`).
    public static let recordBuckets: [Double] = (0...16).map { Double(1 << $0) }
    public static let byteBuckets: [Double] = (0...8).map { Double(4096 << (2 * $0)) }
    public static let batchRecordsLabel = "dlog_journal_batch_records"
    public static let batchBytesLabel = "dlog_journal_batch_bytes"

    /// For journal `index`; `dimensions` go on every series.
    public init(factory: any MetricsFactory, journal index: Int, dimensions: [(String, String)] = []) {
        let dimensions = dimensions + [("journal", "\(index)")]
        sync = Timer(label: "dlog_journal_sync_duration_seconds", dimensions: dimensions, factory: factory)
        queueWait = Timer(label: "dlog_journal_queue_wait_seconds", dimensions: dimensions, factory: factory)
        batchRecords = Recorder(label: Self.batchRecordsLabel, dimensions: dimensions, aggregate: true, factory: factory)
        batchBytes = Recorder(label: Self.batchBytesLabel, dimensions: dimensions, aggregate: true, factory: factory)
    }

    /// The monotonic clock in nanoseconds.
    static var now: UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Records whose oldest was queued at `queued` (`now` then) go into a batch now.
    func taken(queued: UInt64, at now: UInt64) {
        queueWait.recordNanoseconds(Int64(now &- queued))
    }

    func synced(records: Int, bytes: Int, latency: Duration) {
        sync.recordNanoseconds(Int64(latency.components.seconds) * 1_000_000_000 + latency.components.attoseconds / 1_000_000_000)
        batchRecords.record(records)
        batchBytes.record(bytes)
    }
}
