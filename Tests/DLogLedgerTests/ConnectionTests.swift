import DLogClusterSupport
@testable import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Testing

/// How the client deals with bookies that hang or are slow to come back: request timeouts that hand a hung
/// bookie's work to a replacement, the outstanding-add limit, and the reconnect backoff.
@Suite struct ConnectionTests {
    /// A writer over three bookies, one of them `hung`, with a spare bookie outside its ensemble.
    static func writerIncluding(_ hung: HungBookie, _ fixture: LedgerFixture, pool: BookiePool,
                                options: LedgerWriter.Options = .init()) async throws -> LedgerWriter {
        let quorums = Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 3)!
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<40 {
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: pool,
                                                       allocator: fixture.allocator, options: options, using: &rng)
            if writer.ensemble.contains(hung.id) { return writer }
        }
        throw LedgerError.placement("no ensemble with the hung bookie in 40 tries")
    }

    @Test func aHungBookieIsReplacedAfterTheRequestTimeout() async throws {
        // Proves adds to an ensemble with a bookie that never answers complete once the request timeout drops
        // its connection: the writer replaces it with the spare and resends, and the caller sees only latency.
        try await withLedgerCluster(bookies: 3) { fixture in
            let hung = try await HungBookie("bookie-hung", in: fixture)
            defer { hung.close() }
            var options = BookiePool.Options()
            options.requestTimeout = .milliseconds(300)
            let pool = BookiePool(cluster: fixture.cluster, options: options)
            let writer = try await Self.writerIncluding(hung, fixture, pool: pool)
            let ids = try await withThrowingTaskGroup(of: EntryID?.self) { group in
                for n in 0..<20 { group.addTask { try await writer.append(payload(n)) } }
                // Bounded: without the timeout these adds would wait forever.
                group.addTask {
                    try await Task.sleep(for: .seconds(20))
                    return nil
                }
                var ids: Set<EntryID> = []
                for try await id in group {
                    guard let id else { break }
                    ids.insert(id)
                    if ids.count == 20 { break }
                }
                group.cancelAll()
                return ids
            }
            #expect(ids == Set((0..<20).map { EntryID(Int64($0)) }), "every add completed")
            #expect(!writer.ensemble.contains(hung.id), "the hung bookie was replaced")
            try await writer.close()
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            #expect(reader.metadata.fragments.allSatisfy { !$0.bookies.contains(hung.id) })
            await pool.shutdown()
        }
    }

    @Test func addsBeyondTheOutstandingLimitAreRefusedClearly() async throws {
        // Proves a writer with its limit of adds in flight (stuck behind a hung bookie) refuses the next add at
        // once with a back-pressure error naming the limit, and takes adds again once the stuck ones complete.
        try await withLedgerCluster(bookies: 3) { fixture in
            let hung = try await HungBookie("bookie-hung", in: fixture)
            var options = BookiePool.Options()
            options.requestTimeout = .seconds(60)
            let pool = BookiePool(cluster: fixture.cluster, options: options)
            var limited = LedgerWriter.Options()
            limited.maxOutstandingAdds = 4
            let writer = try await Self.writerIncluding(hung, fixture, pool: pool, options: limited)
            let stuck = (0..<4).map { n in Task { try await writer.append(payload(n)) } }
            var refused: (any Error)?
            for _ in 0..<200 where refused == nil {
                try await Task.sleep(for: .milliseconds(10))
                do {
                    _ = try await withThrowingTaskGroup(of: EntryID.self) { group in
                        // An add that is taken would hang too: only a refusal returns.
                        group.addTask { try await writer.append(payload(9)) }
                        group.addTask {
                            try await Task.sleep(for: .milliseconds(200))
                            throw CancellationError()
                        }
                        defer { group.cancelAll() }
                        return try await group.next()!
                    }
                } catch let error as LedgerError {
                    refused = error
                } catch {}
            }
            let error = try #require(refused as? LedgerError)
            #expect(error == .tooManyOutstandingAdds(writer.id, limit: 4))
            #expect("\(error)".contains("4 adds are already in flight"))
            // Closing the hung bookie resets its connection: the writer replaces it and the stuck adds complete.
            hung.close()
            for task in stuck { _ = try await task.value }
            _ = try await writer.append(payload(10))
            try await writer.close()
            await pool.shutdown()
        }
    }

    @Test func aRegisteredButDeadBookieIsPlacedAroundAndNeverChosenAsReplacement() async throws {
        // Proves a bookie that is registered but refuses connections (crashed, its lease not yet expired) is left
        // out of new ensembles, and when it is the only candidate to replace a failed bookie, the writer goes on
        // around the failed position instead of failing.
        try await withLedgerCluster(bookies: 3) { fixture in
            let dead = try await HungBookie("bookie-dead", in: fixture)
            dead.close()  // registered, but its port now refuses connections
            var rng = SeededGenerator(seed: 3)
            let quorums = Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!
            var writers: [LedgerWriter] = []
            for _ in 0..<6 {
                let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                           allocator: fixture.allocator, using: &rng)
                #expect(!writer.ensemble.contains(dead.id), "placed on a bookie that refuses connections")
                writers.append(writer)
            }
            let writer = writers[0]
            for n in 0..<10 { _ = try await writer.append(payload(n)) }
            fixture.kill(writer.ensemble[0])
            for n in 10..<40 { #expect(try await writer.append(payload(n)) == EntryID(Int64(n))) }
            #expect(!writer.ensemble.contains(dead.id))
            for other in writers { try await other.close() }
        }
    }

    @Test func reconnectsBackOffAndRecover() {
        // Proves the wait between connection attempts doubles per failure up to the maximum, refusals say why
        // and for how long, and a success allows the next attempt at once.
        var backoff = ReconnectBackoff(first: .milliseconds(100), max: .seconds(1))
        let start = ContinuousClock.now
        #expect(backoff.refusal(at: start) == nil)
        var delays: [Duration] = []
        for _ in 0..<6 {
            backoff.failed("connection refused", at: start)
            delays.append(backoff.delay)
        }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        let refusal = backoff.refusal(at: start + .milliseconds(500))
        #expect(refusal?.contains("6 connection attempts failed (last: connection refused)") == true, "\(refusal ?? "none")")
        #expect(backoff.refusal(at: start + .seconds(1)) == nil, "allowed again once the wait is over")
        backoff.succeeded()
        backoff.failed("reset", at: start)
        #expect(backoff.delay == .milliseconds(100))
    }
}
