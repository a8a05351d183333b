@testable import DLogBookie
import Testing

@Suite struct CheckpointRetryTests {
    let t0 = ContinuousClock.now

    /// While checkpoints work, every attempt is allowed at once and nothing is reported.
    @Test func workingCheckpointsNeverWaitNorReport() {
        var r = CheckpointRetry()
        for i in 0..<5 {
            #expect(r.allows(t0 + .milliseconds(i)))
            #expect(r.record(nil, at: t0 + .milliseconds(i)) == .quiet)
        }
        #expect(r.failures == 0)
    }

    /// Failures back off, doubling from 50 ms to the 2 s cap; an attempt before the wait is refused.
    @Test func failuresBackOffDoublingUpToTheCap() {
        #expect((1...8).map(CheckpointRetry.delay(afterFailures:)) == [
            .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
            .milliseconds(1600), .seconds(2), .seconds(2)])
        #expect(CheckpointRetry.delay(afterFailures: 1000) == .seconds(2))
        var r = CheckpointRetry()
        var now = t0
        for failures in 1...8 {
            _ = r.record("disk full", at: now)
            let wait = CheckpointRetry.delay(afterFailures: failures)
            #expect(!r.allows(now + wait - .milliseconds(1)), "failure \(failures)")
            #expect(r.allows(now + wait), "failure \(failures)")
            now += wait
        }
        #expect(r.failures == 8)
    }

    /// The first failure is reported, repeats of it only once a minute with the count, a different failure
    /// at once, and the recovery once with the count; then the back-off is gone.
    @Test func reportsNameTheFailureWithoutRepeatingIt() {
        var r = CheckpointRetry()
        #expect(r.record("disk full", at: t0) == .failing(error: "disk full", failures: 1))
        #expect(r.record("disk full", at: t0 + .seconds(1)) == .quiet)
        #expect(r.record("disk full", at: t0 + .seconds(59)) == .quiet)
        #expect(r.record("disk full", at: t0 + .seconds(60)) == .failing(error: "disk full", failures: 4))
        #expect(r.record("I/O error", at: t0 + .seconds(61)) == .failing(error: "I/O error", failures: 5))
        #expect(r.record(nil, at: t0 + .seconds(62)) == .recovered(failures: 5))
        #expect(r.allows(t0 + .seconds(62)) && r.failures == 0)
        #expect(r.record("disk full", at: t0 + .seconds(63)) == .failing(error: "disk full", failures: 1),
                "a new run of failures is reported at once")
    }
}
