import DLogIO
import Foundation
import Testing

@Suite struct WakeupTests {
    /// A signal given while no one waits is kept for the next wait, and taken by it: nothing said between
    /// deciding to sleep and sleeping is lost, and one signal wakes one wait.
    @Test func aSignalGivenBeforeTheWaitIsKeptOnce() {
        let w = Wakeup()
        w.signal()
        #expect(w.wait(until: .now + .seconds(60)))
        #expect(!w.wait(until: .now + .milliseconds(20)), "the signal was taken by the first wait")
    }

    /// A wait ends at its deadline, not before, when no signal comes; a wait with no deadline ends at a signal
    /// from another thread.
    @Test func aWaitEndsAtItsDeadlineOrASignal() {
        let w = Wakeup()
        let deadline = ContinuousClock.now + .milliseconds(50)
        #expect(!w.wait(until: deadline))
        #expect(ContinuousClock.now >= deadline)
        let other = Thread {
            Thread.sleep(forTimeInterval: 0.02)
            w.signal()
        }
        other.start()
        #expect(w.wait(until: nil))
    }
}
