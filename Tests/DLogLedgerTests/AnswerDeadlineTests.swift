import DLogClusterSupport
import DLogLedger
import DLogTestSupport
import DLogWire
import Testing

@Suite struct AnswerDeadlineTests {
    /// A request to a bookie that never answers fails alone, as `unreachable` naming the bookie, at its own
    /// timeout: not before it, not held up by a longer one sent earlier, and the connection stays up for the
    /// requests still waiting. The connection's handler keeps these deadlines with one timer for all of them.
    @Test func eachRequestFailsAtItsOwnTimeout() async throws {
        try await withLedgerCluster(bookies: 1) { fixture in
            let hung = try await HungBookie("bookie-hung", in: fixture)
            defer { hung.close() }
            // The connection itself is given up on only after 10 s (failing whatever still waits on it): long
            // after the short timeouts, and a bound on the test.
            var options = BookiePool.Options()
            options.requestTimeout = .seconds(10)
            let pool = BookiePool(cluster: fixture.cluster, options: options)
            let started = ContinuousClock.now
            let timeouts: [Duration] = [.seconds(30), .milliseconds(600), .milliseconds(200), .milliseconds(400)]
            let ended = await withTaskGroup(of: (Int, Duration, String).self) { group in
                for (n, timeout) in timeouts.enumerated() {
                    group.addTask {
                        let outcome: String
                        do {
                            let request = BookieRequest.readLAC(ledger: LedgerID(1), longPoll: nil)
                            _ = try await pool.send(request, to: hung.id, timeout: timeout)
                            outcome = "answered"
                        } catch {
                            outcome = "\(error)"
                        }
                        return (n, ContinuousClock.now - started, outcome)
                    }
                }
                // The three short ones; the longest (never reached) must not hold them up. Shutting the pool
                // down then fails it.
                var ended: [Int: (Duration, String)] = [:]
                while ended.count < 3, let (n, after, outcome) = await group.next() { ended[n] = (after, outcome) }
                await pool.shutdown()
                for await _ in group {}
                return ended
            }
            for n in 1..<timeouts.count {
                let (after, why) = try #require(ended[n])
                #expect(why.contains("bookie-hung") && why.contains("no answer within"), "\(why)")
                #expect(after >= timeouts[n], "failed after \(after), before its \(timeouts[n])")
                #expect(after < timeouts[n] + .seconds(3), "failed after \(after), long past its \(timeouts[n])")
            }
        }
    }
}
