import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// The ledger client against real bookie and metadata processes on loopback: a killed writer, concurrent
/// recoverers, a hung bookie during recovery and reads, a tailing reader, deletion and a damaged replica.
@Suite(.serialized) struct LedgerProcessTests {
    static let quorums = Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!

    /// Deterministic payloads, so readers check bytes without keeping them.
    static func payload(_ n: Int, size: Int = 300) -> [UInt8] {
        (0..<size + n % 17).map { UInt8(truncatingIfNeeded: n &* 131 &+ $0) }
    }

    static func writer(_ pool: BookiePool, _ quorums: Quorums = quorums) async throws -> LedgerWriter {
        var rng = SystemRandomNumberGenerator()
        return try await LedgerWriter.create(quorums: quorums, password: "pw", pool: pool,
                                             allocator: LedgerIDAllocator(cluster: pool.cluster), using: &rng)
    }

    @Test func aKilledWriterLosesNoConfirmedEntryAndLeavesNoHole() async throws {
        // Proves that after SIGKILL of the writing process (dlog-bench ledger, 4 ledgers with 16 adds in flight
        // each), recovery of each ledger yields every entry the writer was told was confirmed, byte-exact, and
        // that every entry up to the recovered end reads back intact (no hole, no garbage).
        try await withProcessCluster(bookies: 3) { cluster in
            let log = cluster.dir.sub("acked.log")
            let bench = Process()
            bench.executableURL = URL(fileURLWithPath: dlogBenchPath)
            bench.arguments = ["ledger", "--metadata", cluster.uri, "--ensemble", "3", "--write-quorum", "3",
                               "--ack-quorum", "2", "--clients", "4", "--pipeline", "16", "--size", "512",
                               "--duration", "60", "--acked-log", log]
            bench.standardOutput = FileHandle.nullDevice
            bench.standardError = FileHandle.nullDevice
            try bench.run()
            var logged = 0
            let deadline = ContinuousClock.now + .seconds(30)
            while logged < 500 && ContinuousClock.now < deadline && bench.statusIfExited == nil {
                try await Task.sleep(for: .milliseconds(50))
                logged = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").count ?? 0
            }
            kill(bench.processIdentifier, SIGKILL)
            #expect(await bench.exitStatus(within: 30) == SIGKILL, "the writer was killed, not finished")
            #expect(logged >= 500, "the writer confirmed entries before it was killed")

            let verify = try await BenchRun(["verify", "--metadata", cluster.uri, "--acked-log", log], in: cluster.dir, timeout: 180)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(verify.stdout.contains("all present and intact") && verify.stdout.contains("no hole"))
            print("writer crash: \(verify.stdout)")
            // Verification recovered (closed) every ledger the killed writer had open.
            let (pool, _) = try cluster.client()
            try await pool.cluster.forEachLedger { id, metadata, _ in
                #expect(metadata.state == .closed, "\(id) was recovered")
            }
        }
    }

    @Test func twoClientsRecoveringAtOnceAgreeOnOneEnd() async throws {
        // Proves two clients (separate connections) recovering the same open ledger at once end with one closed
        // state; each either returns that state or fails with a clear error, and every add the writer had
        // confirmed lies within the recovered end.
        try await withProcessCluster(bookies: 3) { cluster in
            let (writerPool, _) = try cluster.client()
            let writer = try await Self.writer(writerPool)
            for n in 0..<100 { _ = try await writer.append(Self.payload(n)) }
            let inFlight = (100..<130).map { n in Task { try await writer.append(Self.payload(n)) } }
            let (a, _) = try cluster.client(), (b, _) = try cluster.client()
            let first = Task { try await LedgerRecovery(pool: a).recover(writer.id, password: "pw") }
            let second = Task { try await LedgerRecovery(pool: b).recover(writer.id, password: "pw") }
            let results = [await first.result, await second.result]
            let closed = results.compactMap { try? $0.get() }
            #expect(!closed.isEmpty, "at least one recoverer finished: \(results)")
            #expect(Set(closed.map(\.lastEntry)).count == 1 && Set(closed.map(\.length)).count == 1)
            for case .failure(let error) in results {
                #expect(error is LedgerError && "\(error)".contains("recover"), "a clear error: \(error)")
            }
            let stored = try #require(try await writerPool.cluster.ledger(writer.id)).metadata
            #expect(stored.state == .closed && stored.lastEntry >= EntryID(99))
            for task in inFlight {
                switch await task.result {
                case .success(let entry): #expect(entry <= stored.lastEntry, "confirmed \(entry) is within the end")
                case .failure(let error): #expect(error as? LedgerError == .fenced(writer.id), "\(error)")
                }
            }
            await #expect(throws: LedgerError.fenced(writer.id)) { _ = try await writer.append([1]) }
        }
    }

    @Test func aStoppedBookieStallsNeitherRecoveryNorReads() async throws {
        // Proves the stated bound: with one bookie of the ensemble stopped (SIGSTOP: connections open, nothing
        // answered, each request to it would wait 60 s), recovery completes within 5 s, because fencing and
        // the read-forward go on once the live bookies settle every question. Then every entry reads back
        // within a few seconds: a read the stopped replica does not answer goes to the next one after the
        // speculative delay.
        try await withProcessCluster(bookies: 3) { cluster in
            let (writerPool, _) = try cluster.client()
            let writer = try await Self.writer(writerPool)
            for n in 0..<150 { _ = try await writer.append(Self.payload(n)) }
            let stopped = cluster.index(of: writer.ensemble[1])
            cluster.bookies[stopped].kill(SIGSTOP)
            var patient = BookiePool.Options()
            patient.requestTimeout = .seconds(60)
            let (pool, _) = try cluster.client(patient)
            var recovery = LedgerRecovery(pool: pool)
            recovery.requestTimeout = .seconds(60)
            let started = ContinuousClock.now
            let closed = try await recovery.recover(writer.id, password: "pw")
            let took = ContinuousClock.now - started
            print("recovery with a stopped bookie took \(took)")
            #expect(took < .seconds(5), "recovery waited for the stopped bookie: \(took)")
            #expect(closed.state == .closed && closed.lastEntry == EntryID(149))

            var options = LedgerReader.Options()
            options.readTimeout = .seconds(60)
            options.speculativeReadDelay = .milliseconds(50)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: pool, options: options)
            let reading = ContinuousClock.now
            for n in 0..<150 { #expect(try await reader.read(EntryID(Int64(n))) == Self.payload(n), "entry \(n)") }
            let readTook = ContinuousClock.now - reading
            print("150 reads with a stopped replica took \(readTook)")
            #expect(readTook < .seconds(30), "reads waited for the stopped replica: \(readTook)")
            cluster.bookies[stopped].kill(SIGCONT)
        }
    }

    @Test func aTailingReaderSeesEveryEntryOnceInOrderNeverPastTheLAC() async throws {
        // Proves a reader in another client, tailing an open ledger while it is written in bursts, gets every
        // entry once, in order, byte-exact, never one the writer had not confirmed, and stops after the close.
        try await withProcessCluster(bookies: 3) { cluster in
            let (writerPool, _) = try cluster.client()
            let (readerPool, _) = try cluster.client()
            let writer = try await Self.writer(writerPool)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: readerPool)
            let tailing = Task {
                var seen: [Int] = []
                for try await (entry, bytes) in reader.tail(from: EntryID(0), pollTimeout: .seconds(2)) {
                    #expect(entry <= writer.lastAddConfirmed, "\(entry) delivered before the writer confirmed it")
                    #expect(bytes == Self.payload(Int(entry.rawValue)), "entry \(entry)")
                    seen.append(Int(entry.rawValue))
                }
                return seen
            }
            for burst in 0..<10 {
                for n in burst * 30..<(burst + 1) * 30 { _ = try await writer.append(Self.payload(n)) }
                // Pauses let the reader catch up and wait on a long poll; the idle writer's explicit LAC ends it.
                try await Task.sleep(for: .milliseconds(Int64(burst % 3) * 40))
            }
            #expect(writer.lastAddConfirmed == EntryID(299))
            try await writer.close()
            let seen = try await tailing.value
            #expect(seen == Array(0..<300))
        }
    }

    @Test func aDeletedLedgerIsReclaimedByItsBookies() async throws {
        // Proves delete removes the metadata at once (a wrong password deletes nothing) and every bookie of the
        // ensemble drops the ledger's entries in its next garbage collection.
        try await withProcessCluster(bookies: 3, bookieSettings: "gc_interval_ms = 300") { cluster in
            let (pool, _) = try cluster.client()
            let writer = try await Self.writer(pool)
            for n in 0..<20 { _ = try await writer.append(Self.payload(n)) }
            try await writer.close()
            await #expect(throws: LedgerError.wrongPassword(writer.id)) {
                try await pool.deleteLedger(writer.id, password: "other")
            }
            let bookies = try await pool.registered().filter { writer.ensemble.contains($0.id) }
            for bookie in bookies {
                let answer = try await pool.send(.read(ledger: writer.id, entry: EntryID(0), fenceWith: nil),
                                                 to: bookie.id, timeout: .seconds(10))
                guard case .entry = answer else { Issue.record("\(bookie.id) holds entry 0 before the delete: \(answer)"); return }
            }
            try await pool.deleteLedger(writer.id, password: "pw")
            await #expect(throws: LedgerError.noSuchLedger(writer.id)) {
                _ = try await LedgerReader.open(writer.id, password: "pw", pool: pool)
            }
            for bookie in bookies {
                try await eventually("\(bookie.id) reclaims \(writer.id)", seconds: 30) {
                    let answer = try await pool.send(.read(ledger: writer.id, entry: EntryID(0), fenceWith: nil),
                                                     to: bookie.id, timeout: .seconds(10))
                    if case .failed(.noLedger, _) = answer { return true }
                    return false
                }
            }
        }
    }

    @Test func aDamagedReplicaIsSkippedAndReported() async throws {
        // Proves a replica whose stored entry was damaged on disk (a bit flipped in the bookie's entry log while
        // it was stopped) is skipped for an intact one and counted, and every entry still reads back exact.
        try await withProcessCluster(bookies: 3) { cluster in
            let (pool, _) = try cluster.client()
            let writer = try await Self.writer(pool, Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 3)!)
            for n in 0..<5 { _ = try await writer.append(Self.payload(n, size: 1000)) }
            try await writer.close()
            // Entry 0 is read from the first bookie of its write set first: damage that bookie's copy.
            let first = cluster.index(of: writer.ensemble[0])
            await cluster.stopBookie(first)
            let logs = try FileManager.default.contentsOfDirectory(atPath: cluster.ledgerDirectory(first))
                .filter { $0.hasPrefix("entrylog-") }.sorted()
            let path = cluster.ledgerDirectory(first) + "/" + (try #require(logs.first, "the stopped bookie flushed an entry log"))
            let file = try #require(FileHandle(forUpdatingAtPath: path))
            try file.seek(toOffset: 4096 + 600)
            var byte = try #require(try file.read(upToCount: 1))
            byte[0] ^= 0x20
            try file.seek(toOffset: 4096 + 600)
            try file.write(contentsOf: byte)
            try file.close()
            try await cluster.restartBookie(first)

            var options = LedgerReader.Options()
            options.speculativeReadDelay = nil  // every read asks the first replica first
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: pool, options: options)
            for n in 0..<5 { #expect(try await reader.read(EntryID(Int64(n))) == Self.payload(n, size: 1000), "entry \(n)") }
            #expect(reader.damagedReplicas == 1, "the damaged copy was skipped and reported once")
        }
    }
}
