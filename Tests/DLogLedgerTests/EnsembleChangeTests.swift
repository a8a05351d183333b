import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Logging
import Testing

@Suite struct EnsembleChangeTests {
    @Test(arguments: [(4, 3, 3, 2), (6, 5, 3, 2)])
    func aBookieDyingMidWriteIsReplaced(_ shape: (Int, Int, Int, Int)) async throws {
        // Proves that when a bookie of the ensemble dies while adds are in flight, the writer replaces it (a new
        // fragment recorded by compare-and-set) without failing an add, and every confirmed entry reads back
        // byte-exact afterwards.
        let (count, e, qw, qa) = shape
        try await withLedgerCluster(bookies: count) { fixture in
            var rng = SeededGenerator(seed: 11)
            let quorums = try #require(Quorums(ensembleSize: e, writeQuorum: qw, ackQuorum: qa))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            let victim = writer.ensemble[1]
            // At most 20 adds in flight; the victim dies with adds outstanding, after 120 were issued.
            let ids = try await withThrowingTaskGroup(of: (Int, EntryID).self) { group in
                var ids: [Int: EntryID] = [:]
                for n in 0..<300 {
                    if n >= 20, let (done, id) = try await group.next() { ids[done] = id }
                    if n == 120 { fixture.kill(victim) }
                    group.addTask { (n, try await writer.append(payload(n))) }
                }
                for try await (done, id) in group { ids[done] = id }
                return ids
            }
            #expect(ids.count == 300 && Set(ids.values).count == 300, "every add was confirmed, each its own entry")
            let closed = try await writer.close()
            #expect(closed.lastEntry == EntryID(299))
            #expect(closed.fragments.count >= 2, "the ensemble changed")
            #expect(!closed.fragments.last!.bookies.contains(victim))
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            for (n, id) in ids { #expect(try await reader.read(id) == payload(n), "entry \(id)") }
        }
    }

    @Test func withoutAReplacementTheWriterGoesOnWhileAnAckQuorumLives() async throws {
        // Proves that with no bookie to replace a dead one, adds go on as long as every write set keeps an ack
        // quorum of live bookies, and fail with an error naming the bookie and the reason once one cannot.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 12)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<5 { _ = try await writer.append(payload(n)) }
            fixture.kill(writer.ensemble[2])
            for n in 5..<30 { #expect(try await writer.append(payload(n)) == EntryID(Int64(n))) }
            fixture.kill(writer.ensemble[0])
            do {
                for n in 30..<80 { _ = try await writer.append(payload(n)) }
                Issue.record("adds kept succeeding with one live bookie of three and Qa = 2")
            } catch let error as LedgerError {
                #expect("\(error)".contains("no replacement") && "\(error)".contains("ack quorum of 2"))
            }
        }
    }
}

@Suite struct WorkerAndWriterTests {
    @Test func aWorkerMayHealAnEarlierFragmentOfALiveWritersLedger() async throws {
        // Proves a replication worker can replace a dead bookie in an earlier fragment of a ledger whose writer
        // is still writing: the writer takes that change on at its next compare-and-set (here, close) instead of
        // taking itself for fenced, and the closed ledger keeps the worker's replacement. (Before, the writer's
        // close lost the race and failed as fenced.)
        try await withLedgerCluster(bookies: 5) { fixture in
            var rng = SeededGenerator(seed: 21)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<10 { _ = try await writer.append(payload(n)) }
            let victim = writer.ensemble[1]
            fixture.kill(victim)
            for n in 10..<20 { _ = try await writer.append(payload(n)) }
            #expect(!writer.ensemble.contains(victim), "the writer replaced the dead bookie for new entries")
            let cluster = fixture.pool.cluster
            // The old fragment keeps entries the dead bookie may lack: the writer marked it.
            var marked = false
            for _ in 0..<100 where !marked {
                marked = try await cluster.marks(of: writer.id)?.0.marks
                    .contains { $0.bookie == victim && $0.reason == .writtenAround && $0.fragments == [0] } == true
                if !marked { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(marked, "the replaced bookie is marked for the fragment it may lack entries of")
            // Its registration lease expired and the auditor declared it lost.
            _ = try await cluster.store.commit(Transaction(operations: [.delete(key: ClusterKeys.registration(victim, readOnly: false))]))
            try await cluster.mark(writer.id, [ReplicaMark(bookie: victim, reason: .lost)])
            let worker = ReplicationWorker(me: BookieID("worker"), pool: fixture.pool, placement: EnsemblePlacement(policy: .random),
                                           logger: Logger(label: "test"))
            let outcome = try await worker.repair(writer.id)
            guard case .repaired(let bytes) = outcome else {
                Issue.record("the earlier fragment was not healed: \(outcome)")
                return
            }
            #expect(bytes > 0)
            let healed = try #require(try await cluster.ledger(writer.id)?.metadata)
            #expect(!healed.fragments[0].bookies.contains(victim))
            #expect(try await cluster.marks(of: writer.id) == nil)
            for n in 20..<25 { _ = try await writer.append(payload(n)) }
            let closed = try await writer.close()
            #expect(closed.fragments == healed.fragments && closed.lastEntry == EntryID(24))
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            for n in 0..<25 { #expect(try await reader.read(EntryID(Int64(n))) == payload(n)) }
        }
    }
}
