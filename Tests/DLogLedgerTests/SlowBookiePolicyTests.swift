@testable import DLogLedger
import Testing

@Suite struct SlowBookiePolicyTests {
    let start = ContinuousClock.now

    func policy(_ positions: Int = 3) -> SlowBookiePolicy {
        var settings = SlowBookiePolicy.Settings()
        settings.samplesMin = 4
        settings.samplesMax = 8
        return SlowBookiePolicy(positions: positions, settings: settings)
    }

    func feed(_ p: inout SlowBookiePolicy, _ latencies: [Duration], times: Int = 4) {
        for _ in 0..<times { for (position, latency) in latencies.enumerated() { p.record(latency, position: position) } }
    }

    /// A position far slower than the rest (median over the floor and over factor × the others') is named.
    @Test func aFarSlowerPositionIsNamed() throws {
        var p = policy()
        feed(&p, [.milliseconds(2), .milliseconds(300), .milliseconds(3)])
        let found = p.verdict(now: start)
        let verdict = try #require(found)
        #expect(verdict.position == 1 && verdict.median == .milliseconds(300) && verdict.others == .milliseconds(3))
    }

    /// Under the floor nothing is named, however much slower than the others.
    @Test func underTheFloorNothingIsNamed() {
        var p = policy()
        feed(&p, [.microseconds(100), .milliseconds(90), .microseconds(100)])
        let v1 = p.verdict(now: start)
        #expect(v1 == nil)
    }

    /// Slow relative to a slow cluster is not slow: every bookie at 300 ms, one at 1 s (under 8×), is kept.
    @Test func aLoadedClusterSlowsAllAlike() {
        var p = policy()
        feed(&p, [.milliseconds(300), .seconds(1), .milliseconds(250)])
        let v2 = p.verdict(now: start)
        #expect(v2 == nil)
    }

    /// Too few answers, or nothing to compare with, gives no verdict.
    @Test func noVerdictWithoutEnoughAnswers() {
        var p = policy()
        feed(&p, [.milliseconds(2), .milliseconds(500), .milliseconds(2)], times: 3)
        let v3 = p.verdict(now: start)
        #expect(v3 == nil, "3 answers each, 4 needed")
        var alone = policy(1)
        feed(&alone, [.seconds(1)])
        let v4 = alone.verdict(now: start)
        #expect(v4 == nil, "a single position has no peers")
    }

    /// Of two slow positions the slower is named; after a verdict every position starts afresh and the next
    /// verdict waits for the quiet period.
    @Test func oneVerdictAtATimeThenQuiet() throws {
        var p = policy(4)
        feed(&p, [.milliseconds(2), .milliseconds(400), .milliseconds(900), .milliseconds(2)])
        let v7 = p.verdict(now: start)
        #expect(try #require(v7).position == 2)
        feed(&p, [.milliseconds(2), .milliseconds(400), .milliseconds(2), .milliseconds(2)])
        let quiet = p.verdict(now: start + .seconds(29))
        #expect(quiet == nil, "quiet for 30 s")
        let after = p.verdict(now: start + .seconds(31))
        #expect(try #require(after).position == 1)
    }

    /// Only the last samplesMax answers count: a bookie that recovers is judged by how it does now.
    @Test func aRecoveredBookieIsJudgedByItsRecentAnswers() {
        var p = policy()
        feed(&p, [.milliseconds(2), .milliseconds(500), .milliseconds(2)], times: 4)
        feed(&p, [.milliseconds(2), .milliseconds(2), .milliseconds(2)], times: 8)
        let v5 = p.verdict(now: start)
        #expect(v5 == nil)
    }

    /// Verdicts are taken at most every checkInterval; a replaced position's answers are forgotten.
    @Test func checksAreSpacedAndResetForgets() throws {
        var p = policy()
        feed(&p, [.milliseconds(2), .milliseconds(2), .milliseconds(2)])
        let v6 = p.verdict(now: start)
        #expect(v6 == nil)
        feed(&p, [.milliseconds(2), .milliseconds(800), .milliseconds(2)], times: 8)
        let soon = p.verdict(now: start + .milliseconds(100))
        #expect(soon == nil, "checked 100 ms ago")
        p.reset(position: 1)
        let reset = p.verdict(now: start + .milliseconds(300))
        #expect(reset == nil, "position 1 was reset")
        feed(&p, [.milliseconds(2), .milliseconds(800), .milliseconds(2)], times: 4)
        let later = p.verdict(now: start + .milliseconds(600))
        #expect(try #require(later).position == 1)
    }
}
