import DLogTestSupport
@testable import DLogBookie
import DLogWire
import NIOCore
import Testing

@Suite struct LongPollTimeoutTests {
    /// Polls of different waits on one connection each time out at their own wait (not sooner, and not held
    /// up by the 5 s one), and one answered by its LAC meanwhile is answered then.
    @Test func eachPollTimesOutAtItsOwnWait() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(21, 0))
        let started = ContinuousClock.now
        let waits: [UInt32] = [600, 200, 400, 5_000]
        // Sent in this order on one connection, so the bookie takes each before the adds below.
        let polls = waits.map { wait in
            c.sendFuture(.readLAC(ledger: LedgerID(21),
                                  longPoll: .init(previous: EntryID(5), timeoutMilliseconds: wait)))
        }
        let movePoll = BookieRequest.LongPoll(previous: EntryID(-1), timeoutMilliseconds: 3000)
        let moved = c.sendFuture(.readLAC(ledger: LedgerID(22), longPoll: movePoll))
        // When each answer came, taken on the client's event loop as it arrives. A Task awaiting it ran on the
        // test pool's two threads, which other tests' synchronous work can hold for seconds: the time it took
        // then was the pool's, not the bookie's (8.2 s for a 200 ms poll in one CI run).
        let answered = polls.prefix(3).map { poll in poll.map { ($0, ContinuousClock.now - started) } }
        // The second add leaves from the event loop as the first is answered, for the same reason: sent once an
        // await of the first resumed on that pool, it could leave after `moved` had timed out.
        @Sendable func add(_ e: Int64) -> EventLoopFuture<BookieResponse> {
            c.sendFuture(.add(masterKey: testKey, entry: entry(22, e), recovery: false))
        }
        let first = add(0)
        let second = first.flatMap { _ in add(1) }
        #expect(try await first.get() == .added(ledger: LedgerID(22), entry: EntryID(0)))
        #expect(try await second.get() == .added(ledger: LedgerID(22), entry: EntryID(1)))
        #expect(try await moved.get() == .lac(lac: EntryID(0), lastEntry: EntryID(0)))
        for (wait, poll) in zip(waits, answered) {
            let (answer, after) = try await poll.get()
            #expect(answer == .lac(lac: EntryID(-1), lastEntry: EntryID(0)))
            #expect(after >= .milliseconds(Int64(wait)), "answered after \(after), before its \(wait) ms")
            #expect(after < .milliseconds(Int64(wait) + 3_000), "answered after \(after), long past its \(wait) ms")
        }
        await c.close()
    }

    /// A connection that closes with long polls waiting: the bookie stops watching for them at once, rather
    /// than keeping each (and the connection's memory) until its timeout.
    @Test func aClosedConnectionsPollsStopWaitingAtOnce() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        // Not awaited: closing the client shuts down its own event loop, and these are never answered.
        for n in 0..<3 {
            let poll = BookieRequest.LongPoll(previous: EntryID(0), timeoutMilliseconds: 60_000)
            _ = c.sendFuture(.readLAC(ledger: LedgerID(30 + UInt64(n)), longPoll: poll))
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while b.bookie.storage.waitingLongPolls < 3 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(b.bookie.storage.waitingLongPolls == 3)
        await c.close()
        let gone = ContinuousClock.now + .seconds(5)
        while b.bookie.storage.waitingLongPolls > 0 && ContinuousClock.now < gone {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(b.bookie.storage.waitingLongPolls == 0, "still watched after the connection closed")
        // Another connection is served as before.
        let other = try await b.client()
        try await other.add(key: testKey, entry: entry(30, 0))
        let lac = try await other.send(.readLAC(ledger: LedgerID(30), longPoll: nil))
        #expect(lac == .lac(lac: EntryID(-1), lastEntry: EntryID(0)))
        await other.close()
    }
}
