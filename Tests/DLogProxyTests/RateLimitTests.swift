import DLogProxy
import Testing

@Suite struct RateLimitTests {
    @Test func bucketsRefillAtTheirRateAndHoldOneSecond() {
        let start = ContinuousClock.now
        var bucket = TokenBucket(rate: 10, now: start)
        var taken = 0
        for _ in 0..<10 where bucket.take(1, now: start) { taken += 1 }
        #expect(taken == 10, "a full second's worth at first")
        let empty = bucket.take(1, now: start)
        #expect(!empty)
        let half = bucket.take(5, now: start + .milliseconds(500)), beyondHalf = bucket.take(1, now: start + .milliseconds(500))
        #expect(half && !beyondHalf, "half a second refills half")
        let full = bucket.take(10, now: start + .seconds(60)), beyondFull = bucket.take(1, now: start + .seconds(60))
        #expect(full && !beyondFull, "never more than one second's worth")
    }

    @Test func softLimitsWarnAndHardLimitsRefuse() {
        let now = ContinuousClock.now
        var check = RateCheck(scope: "stream 's'", records: (soft: 5, hard: 8), bytes: (soft: 0, hard: 0), now: now)
        var outcomes: [RateCheck.Outcome] = []
        for _ in 0..<10 { outcomes.append(check.check(records: 1, bytes: 10, now: now)) }
        #expect(outcomes.prefix(5).allSatisfy { $0 == .allowed })
        #expect(outcomes[5..<8].allSatisfy { if case .soft = $0 { true } else { false } })
        #expect(outcomes[8] == .hard("stream 's' is over its hard limit of 8 records/s"))
    }

    @Test func aRequestLargerThanOneSecondFitsAFullBucketOnce() {
        // Proves a request larger than a second's worth is not refused forever: a full bucket lets it through,
        // in debt, and the next one waits until the debt is repaid.
        let start = ContinuousClock.now
        var bucket = TokenBucket(rate: 10, now: start)
        let large = bucket.take(25, now: start)
        let next = bucket.take(1, now: start + .seconds(1))
        let later = bucket.take(1, now: start + .seconds(3))
        #expect(large && !next && later)
    }
}
