import DLogBookie
import DLogClusterSupport
import DLogIO
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Logging
import Prometheus
import Testing

@Suite struct ReplicationCopyTests {
    /// A worker copies in batches: healing a lost bookie's copies of a closed 300-entry ledger takes a few
    /// READ_RANGE requests, not a READ per entry (before, it took 300). A copy its first source holds damaged is
    /// fetched from the next replica, and the replacement ends with every entry intact.
    @Test func aLostBookiesCopiesMoveInBatchesAroundADamagedSource() async throws {
        try await withLedgerCluster(bookies: 5) { fixture in
            var rng = SeededGenerator(seed: 31)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<300 { _ = try await writer.append(payload(n)) }
            let closed = try await writer.close()
            let ensemble = closed.fragments[0].bookies
            func index(_ id: BookieID) -> Int { Int(id.rawValue.dropFirst("bookie-".count))! }

            // The first source (the ensemble's next bookie) holds entry 7 damaged in its entry log.
            let source = fixture.bookies[index(ensemble[1])].bookie
            _ = try source.storage.checkpoint()
            let path = fixture.directory.sub("bookie\(index(ensemble[1]))") + "/ledgers/entrylog-1.log"
            var bytes = try FileSystem.readAll(path)
            var key = [UInt8]()
            key.appendBigEndian(writer.id.rawValue)
            key.appendBigEndian(UInt64(7))
            let at = try #require(bytes.indices.first { bytes[$0..<min($0 + 16, bytes.count)].elementsEqual(key) })
            bytes[at + EntryHeader.byteCount + 5] ^= 0x10
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            guard case .failed(.corruptEntry, _) = source.readEntryBlocking(ledger: writer.id, entry: EntryID(7)) else {
                Issue.record("the damage did not take")
                return
            }

            let victim = ensemble[0]
            fixture.kill(victim)
            let cluster = fixture.pool.cluster
            _ = try await cluster.store.commit(Transaction(operations: [.delete(key: ClusterKeys.registration(victim, readOnly: false))]))
            try await cluster.mark(writer.id, [ReplicaMark(bookie: victim, reason: .lost)])
            let readsBefore = fixture.bookies.reduce(UInt64(0)) { $0 + $1.bookie.readsReceived.load(ordering: .relaxed) }
            var settings = ReplicationWorker.Settings()
            settings.batchBytes = 256 << 10  // the fixture's bookies take frames of up to 1 MiB
            // The worker's pool records into a Prometheus registry, as a bookie role's does.
            let registry = PrometheusCollectorRegistry()
            var options = BookiePool.Options()
            options.metrics = PrometheusMetricsFactory(registry: registry)
            let pool = BookiePool(cluster: fixture.pool.cluster, options: options)
            defer { Task { await pool.shutdown() } }
            let worker = ReplicationWorker(me: BookieID("worker"), pool: pool, placement: EnsemblePlacement(policy: .random),
                                           settings: settings, logger: Logger(label: "test"))
            guard case .repaired = try await worker.repair(writer.id) else {
                Issue.record("the ledger was not healed")
                return
            }
            let reads = fixture.bookies.reduce(UInt64(0)) { $0 + $1.bookie.readsReceived.load(ordering: .relaxed) } - readsBefore
            #expect(reads <= 10, "\(reads) read requests for 300 entries")

            let healed = try #require(try await cluster.ledger(writer.id)?.metadata)
            let replacement = healed.fragments[0].bookies[0]
            #expect(replacement != victim && !ensemble.contains(replacement))
            let copy = fixture.bookies[index(replacement)].bookie
            for n in 0..<300 {
                guard case .entry(let stored) = copy.readEntryBlocking(ledger: writer.id, entry: EntryID(Int64(n))) else {
                    Issue.record("entry \(n) missing on the replacement")
                    continue
                }
                #expect(Array(EntryCodec.payload(of: stored)) == payload(n), "entry \(n)")
            }
            #expect(worker.totals.entriesCopied == 300 && worker.totals.copyErrors == 0)
            #expect(registry.emitToString().contains("dlog_recovery_ledger_duration_seconds_count 1\n"), "one repair timed")
        }
    }

    /// A reader opened before healing moved every copy of its ledger still reads it: each of the ensemble's three
    /// bookies is retired in turn (a worker replaces it), then drops its copies as a replaced bookie's GC does. The
    /// reader, asked for an entry its metadata places only on those three, reads the metadata again and finds the
    /// copies where they went. (Before, it failed with "unreadable" until it was opened anew.)
    @Test func aReaderOpenedBeforeHealingFindsTheCopiesWhereTheyWent() async throws {
        try await withLedgerCluster(bookies: 6) { fixture in
            var rng = SeededGenerator(seed: 47)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<20 { _ = try await writer.append(payload(n)) }
            let ensemble = try await writer.close().fragments[0].bookies
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            #expect(try await reader.read(EntryID(3)) == payload(3))
            let worker = ReplicationWorker(me: BookieID("worker"), pool: fixture.pool, placement: EnsemblePlacement(policy: .random),
                                           settings: ReplicationWorker.Settings(), logger: Logger(label: "test"))
            for bookie in ensemble {
                // Drained, as `dlogctl bookie drain` does it: retiring, so no later copy goes back to it.
                try await fixture.pool.cluster.retire(bookie, drain: true)
                try await fixture.pool.cluster.mark(writer.id, [ReplicaMark(bookie: bookie, reason: .retiring)])
                guard case .repaired = try await worker.repair(writer.id) else {
                    Issue.record("\(bookie) was not replaced")
                    return
                }
                let held = fixture.bookies[Int(bookie.rawValue.dropFirst("bookie-".count))!].bookie
                let deleted = await withCheckedContinuation { done in held.deleteLedger(writer.id) { done.resume(returning: $0) } }
                #expect(deleted == .done, "\(bookie) deleted its copies")
            }
            let now = try #require(try await fixture.pool.cluster.ledger(writer.id)?.metadata.fragments[0].bookies)
            #expect(Set(now).isDisjoint(with: ensemble), "every bookie was replaced: \(now)")
            #expect(try await reader.read(from: EntryID(0), through: EntryID(19)) == (0..<20).map { payload($0) })
            #expect(reader.metadata.fragments[0].bookies == now)
        }
    }

    /// A running worker starts on a new mark at once: it watches the marks between rounds, where it used to sleep
    /// a whole idle poll (here a minute) before it looked again.
    @Test func aRunningWorkerStartsOnANewMarkAtOnce() async throws {
        try await withLedgerCluster(bookies: 4) { fixture in
            var rng = SeededGenerator(seed: 32)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<20 { _ = try await writer.append(payload(n)) }
            let closed = try await writer.close()
            let cluster = fixture.pool.cluster
            let lease = try await cluster.store.grantLease(ttlSeconds: 30).id
            var settings = ReplicationWorker.Settings()
            settings.idlePoll = .seconds(60)
            let worker = ReplicationWorker(me: BookieID("worker"), pool: fixture.pool, placement: EnsemblePlacement(policy: .random),
                                           settings: settings, logger: Logger(label: "test"))
            let running = Task { await worker.run(lease: { lease }) }
            defer { running.cancel() }
            // Its first round finds nothing and it waits; then a bookie is lost and the ledger marked.
            try await Task.sleep(for: .seconds(1))
            let victim = closed.fragments[0].bookies[0]
            fixture.kill(victim)
            _ = try await cluster.store.commit(Transaction(operations: [.delete(key: ClusterKeys.registration(victim, readOnly: false))]))
            let marked = ContinuousClock.now
            try await cluster.mark(writer.id, [ReplicaMark(bookie: victim, reason: .lost)])
            while try await cluster.marks(of: writer.id) != nil, ContinuousClock.now - marked < .seconds(20) {
                try await Task.sleep(for: .milliseconds(50))
            }
            let took = ContinuousClock.now - marked
            #expect(took < .seconds(15), "the mark waited \(took) for a worker with a 60 s idle poll")
            let healed = try #require(try await cluster.ledger(writer.id)?.metadata)
            #expect(!healed.fragments[0].bookies.contains(victim))
        }
    }

    /// A worker beside a bookie copies to that bookie whenever the placement finds it as good as the others, and
    /// reads from it first when it holds a replica, in process both ways. Of 30 ledgers, every one that lost a copy
    /// and did not name the worker's bookie is healed onto it (at random, each would have had one chance in two).
    @Test func aWorkerCopiesToAndFromItsOwnBookieInProcess() async throws {
        try await withLedgerCluster(bookies: 5) { fixture in
            var rng = SeededGenerator(seed: 33)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            var ledgers: [(id: LedgerID, metadata: LedgerMetadata)] = []
            for l in 0..<30 {
                let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                           allocator: fixture.allocator, using: &rng)
                for n in 0..<5 { _ = try await writer.append(payload(l * 10 + n)) }
                ledgers.append((writer.id, try await writer.close()))
            }
            let victim = BookieID("bookie-0"), mine = BookieID("bookie-4")
            fixture.kill(victim)
            let cluster = fixture.pool.cluster
            _ = try await cluster.store.commit(Transaction(operations: [.delete(key: ClusterKeys.registration(victim, readOnly: false))]))
            let own = fixture.bookies[4].bookie
            let worker = ReplicationWorker(me: mine, pool: fixture.pool, placement: EnsemblePlacement(policy: .random),
                                           local: .init(id: mine) { await own.serveInProcess($0) }, logger: Logger(label: "test"))
            var targets = 0
            for (l, (id, ledger)) in ledgers.enumerated() where ledger.fragments[0].bookies.contains(victim) {
                try await cluster.mark(id, [ReplicaMark(bookie: victim, reason: .lost)])
                guard case .repaired = try await worker.repair(id) else {
                    Issue.record("ledger \(id) was not healed")
                    continue
                }
                let healed = try #require(try await cluster.ledger(id)?.metadata).fragments[0].bookies
                let replacement = healed[ledger.fragments[0].bookies.firstIndex(of: victim)!]
                if !ledger.fragments[0].bookies.contains(mine) {
                    targets += 1
                    #expect(replacement == mine, "ledger \(id) went to \(replacement), not to the worker's own bookie")
                }
                let copy = fixture.bookies[Int(replacement.rawValue.dropFirst("bookie-".count))!].bookie
                for n in 0..<5 {
                    guard case .entry(let stored) = copy.readEntryBlocking(ledger: id, entry: EntryID(Int64(n))) else {
                        Issue.record("entry \(n) of ledger \(id) missing on \(replacement)")
                        continue
                    }
                    #expect(Array(EntryCodec.payload(of: stored)) == payload(l * 10 + n))
                }
            }
            #expect(targets >= 3, "only \(targets) ledgers could go to the worker's own bookie: choose another seed")
        }
    }
}
