/// Counters the journal keeps for GET_INFO, metrics and dlog-bench. Plain values; the journal guards them.
public struct JournalStats: Sendable, Codable, Equatable {
    public var engine: String = ""
    public var syncMode: String = ""
    public var syncs: UInt64 = 0
    public var recordsSynced: UInt64 = 0
    public var bytesSynced: UInt64 = 0
    public var flushesByMaxWait: UInt64 = 0
    public var flushesByBytes: UInt64 = 0
    public var flushesByQueueEmpty: UInt64 = 0
    public var queueDepth: Int = 0
    public var rejectedQueueFull: UInt64 = 0
    /// Times (1 ms each) the writer waited for a checkpoint to free a journal file: a sign the journal is
    /// too small for the write rate.
    public var waitsForFreeFile: UInt64 = 0
    /// Times the writer polled the queue after a completion instead of sleeping (`spinMax`), and how many of
    /// those polls found an add: a low share means the spins only took a core from the threads feeding it.
    public var spins: UInt64 = 0
    public var spinsThatFoundWork: UInt64 = 0
    public var largestBatchRecords: Int = 0
    public var largestBatchBytes: Int = 0
    /// Write+sync latency histogram: bucket i counts syncs that took < 2^i × 16 µs (last bucket: the rest).
    public var syncLatencyBuckets: [UInt64] = Array(repeating: 0, count: LatencyBuckets.count)
    /// Records per batch: bucket i counts batches of < 2^(i+1) records (last bucket: the rest).
    public var batchRecordBuckets: [UInt64] = Array(repeating: 0, count: 16)
    /// Bytes per batch: bucket i counts batches of < 4 KiB × 2^(i+1) (last bucket: the rest).
    public var batchBytesBuckets: [UInt64] = Array(repeating: 0, count: 12)
    public var failed: String? = nil

    public init() {}

    mutating func recordSync(records: Int, bytes: Int, latency: Duration) {
        syncs += 1
        recordsSynced += UInt64(records)
        bytesSynced += UInt64(bytes)
        largestBatchRecords = max(largestBatchRecords, records)
        largestBatchBytes = max(largestBatchBytes, bytes)
        syncLatencyBuckets[LatencyBuckets.index(of: latency)] += 1
        batchRecordBuckets[Self.powerBucket(records, unit: 1, count: batchRecordBuckets.count)] += 1
        batchBytesBuckets[Self.powerBucket(bytes, unit: 4096, count: batchBytesBuckets.count)] += 1
    }

    /// Index of the first bucket whose bound (unit × 2^(i+1)) exceeds `value`.
    static func powerBucket(_ value: Int, unit: Int, count: Int) -> Int {
        var bound = unit * 2
        for i in 0..<(count - 1) {
            if value < bound { return i }
            bound *= 2
        }
        return count - 1
    }

    mutating func recordFlush(_ trigger: GroupCommitPolicy.Trigger) {
        switch trigger {
        case .maxWait: flushesByMaxWait += 1
        case .bytes: flushesByBytes += 1
        case .queueEmpty: flushesByQueueEmpty += 1
        }
    }
}

/// Exponential latency buckets from 16 µs: enough resolution for sync times from 50 µs to seconds.
public enum LatencyBuckets {
    public static let count = 20

    public static func index(of d: Duration) -> Int {
        let micros = max(0, d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000)
        var bound: Int64 = 16
        for i in 0..<(count - 1) {
            if micros < bound { return i }
            bound *= 2
        }
        return count - 1
    }

    /// Upper bound of bucket `i` in microseconds.
    public static func upperBoundMicros(_ i: Int) -> Int64 { 16 << Int64(i) }
}
