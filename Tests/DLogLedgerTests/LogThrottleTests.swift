import DLogLedger
import Testing

@Suite struct LogThrottleTests {
    @Test func repeatsWithinTheIntervalAreFoldedIntoTheNextLine() {
        // Proves a note is logged the first time, folded while it repeats within the interval, and logged again
        // after it with the number folded; other keys are independent.
        var throttle = LogThrottle(interval: .seconds(10))
        let start = ContinuousClock.now
        #expect(throttle.admit("slow-kept b1", now: start) == 0)
        for second in 1...5 { #expect(throttle.admit("slow-kept b1", now: start + .seconds(second)) == nil) }
        #expect(throttle.admit("slow-kept b2", now: start + .seconds(5)) == 0)
        #expect(throttle.admit("slow-kept b1", now: start + .seconds(10)) == 5)
        #expect(throttle.admit("slow-kept b1", now: start + .seconds(11)) == nil)
        #expect(throttle.admit("slow-kept b1", now: start + .seconds(25)) == 1)
    }

    @Test func itRemembersAtMostKeysMaxKeys() {
        // Proves the keys are bounded: past `keysMax` the throttle forgets them all, so a forgotten key is logged
        // again at once (never lost, at worst early).
        var throttle = LogThrottle(interval: .seconds(10), keysMax: 3)
        let now = ContinuousClock.now
        for n in 0..<3 { #expect(throttle.admit("k\(n)", now: now) == 0) }
        #expect(throttle.admit("k0", now: now) == nil)
        #expect(throttle.admit("k3", now: now) == 0)
        #expect(throttle.admit("k0", now: now) == 0, "forgotten with the others when k3 came")
    }
}
