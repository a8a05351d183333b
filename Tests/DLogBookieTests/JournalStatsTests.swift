@testable import DLogBookie
import Testing

@Suite struct JournalStatsTests {
    /// Each sync lands in the right latency, record-count and byte buckets.
    @Test func bucketsCountWhatTheyName() {
        var s = JournalStats()
        s.recordSync(records: 1, bytes: 4096, latency: .microseconds(100))
        s.recordSync(records: 3, bytes: 12288, latency: .microseconds(10))
        s.recordSync(records: 100_000, bytes: 1 << 30, latency: .seconds(100))
        #expect(s.syncs == 3 && s.recordsSynced == 100_004)
        #expect(s.batchRecordBuckets[0] == 1 && s.batchRecordBuckets[1] == 1 && s.batchRecordBuckets[15] == 1)
        #expect(s.batchBytesBuckets[0] == 1 && s.batchBytesBuckets[1] == 1)
        #expect(s.batchBytesBuckets[11] == 1)
        #expect(s.syncLatencyBuckets[0] == 1)  // 10 µs < 16 µs
        #expect(s.syncLatencyBuckets[3] == 1)  // 64 ≤ 100 µs < 128
        #expect(s.syncLatencyBuckets[LatencyBuckets.count - 1] == 1)
        #expect(s.largestBatchRecords == 100_000)
    }

    /// Flush triggers are counted by kind.
    @Test func triggersAreCounted() {
        var s = JournalStats()
        for t in GroupCommitPolicy.Trigger.allCases { s.recordFlush(t) }
        s.recordFlush(.bytes)
        #expect(s.flushesByMaxWait == 1 && s.flushesByBytes == 2 && s.flushesByQueueEmpty == 1)
    }
}
