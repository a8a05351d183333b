import DLogLedger
import Testing

@Suite struct DoorbellTests {
    /// A ring wakes the task waiting; a ring while none waits is kept for the next wait (once); a wait with no
    /// ring ends at its timeout; a cancelled wait ends at once.
    @Test func aRingWakesTheWaiterOrTheNextOne() async throws {
        let bell = Doorbell()
        let clock = ContinuousClock()

        let waiting = Task { await clock.measure { await bell.wait(upTo: .seconds(60)) } }
        try await Task.sleep(for: .milliseconds(200))
        bell.ring()
        #expect(await waiting.value < .seconds(30), "a ring wakes the waiter")

        bell.ring()
        bell.ring()
        #expect(await clock.measure { await bell.wait(upTo: .seconds(60)) } < .seconds(30), "a ring before the wait is kept")
        let second = await clock.measure { await bell.wait(upTo: .milliseconds(300)) }
        #expect(second >= .milliseconds(300) && second < .seconds(30), "rings are not counted: one is kept, not two")

        let cancelled = Task { await clock.measure { await bell.wait(upTo: .seconds(60)) } }
        try await Task.sleep(for: .milliseconds(200))
        cancelled.cancel()
        #expect(await cancelled.value < .seconds(30), "a cancelled wait ends")
    }
}
