@testable import DLogBookie
import Testing

@Suite struct BackgroundScheduleTests {
    private let start = ContinuousClock.now
    private func at(_ ms: Int) -> ContinuousClock.Instant { start + .milliseconds(ms) }

    /// Disks are checked at the first tick and then every disk interval; checkpoints come every checkpoint
    /// interval, and at once when asked, the ask taken by that checkpoint; a tick between them does nothing.
    @Test func checkpointsOnTheIntervalAndWhenAsked() {
        var schedule = BackgroundSchedule(start: start, checkpointInterval: .milliseconds(1000),
                                          diskCheckInterval: .milliseconds(500))
        #expect(schedule.next(now: at(10), checkpointAsked: false) == .init(checkDisks: true))
        #expect(schedule.next(now: at(20), checkpointAsked: false) == .init())
        #expect(schedule.next(now: at(300), checkpointAsked: true) == .init(checkpoint: true, takesAsk: true))
        #expect(schedule.checkpointEnded(nil, at: at(310)) == .quiet)
        #expect(schedule.next(now: at(510), checkpointAsked: false) == .init(checkDisks: true))
        // The interval counts from the last checkpoint (the asked one, at 300 ms).
        #expect(schedule.next(now: at(1200), checkpointAsked: false) == .init(checkDisks: true))
        #expect(schedule.next(now: at(1300), checkpointAsked: false) == .init(checkpoint: true))
    }

    /// A failing checkpoint backs off (CheckpointRetry): asks made meanwhile are not taken, and stay for the
    /// first tick after the back-off; the failure is reported once, the recovery once.
    @Test func aFailingCheckpointHoldsAsksUntilItsBackOffPasses() {
        var schedule = BackgroundSchedule(start: start, checkpointInterval: .seconds(3600),
                                          diskCheckInterval: .seconds(3600))
        _ = schedule.next(now: at(0), checkpointAsked: false)
        #expect(schedule.next(now: at(10), checkpointAsked: true) == .init(checkpoint: true, takesAsk: true))
        #expect(schedule.checkpointEnded("disk full", at: at(10)) == .failing(error: "disk full", failures: 1))
        #expect(schedule.checkpointFailures == 1)
        // Back-off after one failure: 50 ms.
        #expect(schedule.next(now: at(30), checkpointAsked: true) == .init())
        #expect(schedule.next(now: at(59), checkpointAsked: true) == .init())
        #expect(schedule.next(now: at(60), checkpointAsked: true) == .init(checkpoint: true, takesAsk: true))
        #expect(schedule.checkpointEnded(nil, at: at(70)) == .recovered(failures: 1))
        #expect(schedule.checkpointFailures == 0)
        #expect(schedule.next(now: at(71), checkpointAsked: true) == .init(checkpoint: true, takesAsk: true))
    }

    /// The driver sleeps until the next work is due: the earlier of the next disk check and the next checkpoint.
    /// An ask is due at once, or when a failing checkpoint's back-off ends.
    @Test func theNextTurnIsDueAtTheEarliestWork() {
        var schedule = BackgroundSchedule(start: start, checkpointInterval: .milliseconds(1000),
                                          diskCheckInterval: .milliseconds(500))
        _ = schedule.next(now: at(10), checkpointAsked: false)
        #expect(schedule.nextDue(now: at(20), checkpointAsked: false) == at(510))
        #expect(schedule.nextDue(now: at(20), checkpointAsked: true) == at(20))
        _ = schedule.next(now: at(510), checkpointAsked: false)
        #expect(schedule.nextDue(now: at(520), checkpointAsked: false) == at(1000), "the interval counts from the start")
        _ = schedule.next(now: at(600), checkpointAsked: true)
        _ = schedule.checkpointEnded("disk full", at: at(610))
        #expect(schedule.nextDue(now: at(620), checkpointAsked: true) == at(660), "after the back-off of 50 ms")
        #expect(schedule.nextDue(now: at(620), checkpointAsked: false) == at(1010), "the next disk check")
    }
}
