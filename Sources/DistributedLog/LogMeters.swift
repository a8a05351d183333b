import CoreMetrics

/// What a namespace's log writers achieve, through swift-metrics into the factory of its bookie pool
/// (`BookiePool.Options.metrics`): how many records each entry carried, the batching that lets many writers of a
/// stream share one replicated add.
public final class LogMeters: Sendable {
    let recordsPerEntry: Recorder

    public static let recordsPerEntryLabel = "dlog_log_records_per_entry"
    /// Powers of two up to an entry's most records of 100 bytes (`LogOptions.entryBytesMax`, 256 KiB).
    public static let recordsPerEntryBuckets: [Double] = (0...12).map { Double(1 << $0) }

    public init(factory: any MetricsFactory, dimensions: [(String, String)] = []) {
        recordsPerEntry = Recorder(label: Self.recordsPerEntryLabel, dimensions: dimensions, aggregate: true, factory: factory)
    }
}
