import DLogBookie
import Testing

@Suite struct GroupCommitPolicyTests {
    let t0 = ContinuousClock.now
    let config = GroupCommitPolicy.Configuration(groupWaitMax: .milliseconds(1), bufferedBytesMax: 1000, maxInFlight: 1)

    /// With nothing pending and nothing in flight the writer idles without a deadline.
    @Test func idleWaitsWithoutDeadline() {
        let p = GroupCommitPolicy(config)
        #expect(p.next(now: t0, queueEmpty: true) == .waitForWork(until: nil))
    }

    /// A lone record is flushed at once when the queue is empty and nothing syncs: no added latency.
    @Test func queueEmptyFlushesImmediately() {
        var p = GroupCommitPolicy(config)
        p.added(bytes: 10, at: t0)
        #expect(p.next(now: t0, queueEmpty: true) == .flush(.queueEmpty))
        #expect(p.next(now: t0, queueEmpty: false) == .waitForWork(until: t0 + .milliseconds(1)))
    }

    /// While a batch syncs the next accumulates; the writer waits for the completion instead of flushing.
    @Test func accumulatesWhileInFlight() {
        var p = GroupCommitPolicy(config)
        p.added(bytes: 10, at: t0)
        p.flushed()
        p.added(bytes: 10, at: t0)
        #expect(p.next(now: t0, queueEmpty: true) == .awaitCompletion)
        #expect(p.next(now: t0 + .seconds(1), queueEmpty: true) == .awaitCompletion)
        p.completed()
        #expect(p.next(now: t0, queueEmpty: true) == .flush(.queueEmpty))
    }

    /// The byte threshold flushes before the wait elapses; a record that does not fit counts as full.
    @Test func bytesThreshold() {
        var p = GroupCommitPolicy(config)
        p.added(bytes: 600, at: t0)
        #expect(p.next(now: t0, queueEmpty: false) == .waitForWork(until: t0 + .milliseconds(1)))
        p.added(bytes: 400, at: t0)
        #expect(p.next(now: t0, queueEmpty: false) == .flush(.bytes))
        var q = GroupCommitPolicy(config)
        q.added(bytes: 10, at: t0)
        #expect(q.next(now: t0, queueEmpty: false, bufferFull: true) == .flush(.bytes))
    }

    /// The oldest record's wait bounds the added latency even while more keeps arriving.
    @Test func maxWaitFromOldestRecord() {
        var p = GroupCommitPolicy(config)
        p.added(bytes: 10, at: t0)
        p.added(bytes: 10, at: t0 + .microseconds(900))
        #expect(p.next(now: t0 + .microseconds(999), queueEmpty: false) == .waitForWork(until: t0 + .milliseconds(1)))
        #expect(p.next(now: t0 + .milliseconds(1), queueEmpty: false) == .flush(.maxWait))
    }

    /// With two batches allowed in flight, a ready batch is flushed while one syncs; a not-ready one waits
    /// for the completion.
    @Test func twoInFlight() {
        var p = GroupCommitPolicy(.init(groupWaitMax: .milliseconds(1), bufferedBytesMax: 100, maxInFlight: 2))
        p.added(bytes: 10, at: t0)
        p.flushed()
        p.added(bytes: 100, at: t0)
        #expect(p.next(now: t0, queueEmpty: false) == .flush(.bytes))
        p.flushed()
        p.added(bytes: 1, at: t0)
        #expect(p.next(now: t0, queueEmpty: true) == .awaitCompletion)
        p.completed()
        #expect(p.pendingRecords == 1 && p.inFlight == 1)
    }
}
