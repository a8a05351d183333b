import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Synchronization
import Testing

@Suite struct TailingTests {
    @Test func anIdleWriterMakesItsLastEntryVisible() async throws {
        // Proves that once the writer is idle its LAC is written explicitly, so a reader can read the last
        // entry without waiting for another add.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 31)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<5 { _ = try await writer.append(payload(n)) }
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            let lac = try await reader.waitForLastAddConfirmed(after: EntryID(3), timeout: .seconds(10))
            #expect(lac == EntryID(4))
            #expect(try await reader.read(EntryID(4)) == payload(4))
        }
    }

    @Test func aConfirmedEntryIsVisibleWhileLaterAddsWait() async throws {
        // Proves the writer tells the bookies a new LAC even while later adds are in flight: entry 1 waits on a
        // bookie that never answers, so no add will carry LAC 0 and the writer is never idle, yet a reader sees
        // entry 0. (The LAC used to be written explicitly only by an idle writer.)
        try await withLedgerCluster(bookies: 2) { fixture in
            let hung = try await HungBookie("bookie-hung", in: fixture)
            defer { hung.close() }
            // Long enough that the hung bookie is not given up on (and replaced) during the test.
            var options = BookiePool.Options()
            options.requestTimeout = .seconds(120)
            let pool = BookiePool(cluster: fixture.cluster, options: options)
            // Entry 0 goes to positions 0 and 1, entry 1 to 1 and 2: the hung bookie must be at position 2.
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 2, ackQuorum: 2))
            var rng = SeededGenerator(seed: 34)
            var writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: pool,
                                                       allocator: fixture.allocator, using: &rng)
            while writer.ensemble[2] != hung.id {
                writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: pool,
                                                       allocator: fixture.allocator, using: &rng)
            }
            // Both sent before either is answered: entry 1's header carries no LAC.
            let confirmed = AsyncStream.makeStream(of: EntryID.self)
            writer.append(payload(0)) { if case .success(let id) = $0 { confirmed.continuation.yield(id) } }
            writer.append(payload(1)) { if case .success(let id) = $0 { confirmed.continuation.yield(id) } }
            let first = try await withTimeout(10, "entry 0 confirmed") { () -> EntryID? in
                for await id in confirmed.stream { return id }
                return nil
            }
            #expect(first == EntryID(0))

            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: pool)
            let lac = try await withTimeout(30, "a long poll") {
                try await reader.waitForLastAddConfirmed(after: .none, timeout: .seconds(10))
            }
            #expect(lac == EntryID(0), "the bookies were never told LAC 0")
            if lac == EntryID(0) { #expect(try await reader.read(EntryID(0)) == payload(0)) }
            await pool.shutdown()
        }
    }

    @Test func aTailingReaderSeesEveryEntryOnceInOrderNeverPastLAC() async throws {
        // Proves a reader tailing an open ledger gets every entry once, in order, as it is confirmed, never one
        // past the writer's LAC, and ends after the last entry when the writer closes the ledger.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 32)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            let tail = Task {
                var seen: [(EntryID, [UInt8])] = []
                for try await (entry, bytes) in reader.tail(pollTimeout: .milliseconds(500)) {
                    // The writer confirmed this entry before any bookie could report it confirmed.
                    #expect(entry <= writer.lastAddConfirmed, "\(entry) delivered past the writer's LAC")
                    seen.append((entry, bytes))
                }
                return seen
            }
            for n in 0..<60 {
                _ = try await writer.append(payload(n))
                if n % 7 == 0 { try await Task.sleep(for: .milliseconds(15)) }
            }
            try await writer.close()
            let seen = try await withTimeout(30, "tailing to the end") { try await tail.value }
            #expect(seen.map(\.0) == (0..<60).map { EntryID(Int64($0)) })
            #expect(seen.allSatisfy { $0.1 == payload(Int($0.0.rawValue)) })
        }
    }

    @Test func aTailingReaderIsNotHeldByABookieWhoseSyncLags() async throws {
        // Proves a long poll is answered as soon as its bookie hears a LAC past the reader's, even when the entry
        // that LAC covers is not durable on that bookie yet; the reader then reads the entry from a bookie that
        // holds it. Bookie 2's journal stalls: entries reach their ack quorum on bookies 0 and 1,
        // while bookie 2 takes the adds and hears their LACs but stores nothing. A reader that keeps up polls one
        // bookie first and the others only after the spread delay (30 s here), and one wait in three goes to
        // bookie 2 first. A bookie used to hold such a poll until the entry was durable there, so the reader
        // waited out the spread delay: on a shared disk, the slowest copy's sync set the tail latency.
        let stall = JournalStall()
        // No checkpoint during the test: the entries stay in the bookies' memory, where the polls take them from.
        try await withLedgerCluster(bookies: 3, checkpointInterval: .seconds(3600), configure: { index, config in
            if index == 2 { config.journal.makeEngine = { StallingJournalEngine(stall) } }
        }) { fixture in
            defer { stall.end() }
            // Bookie 2's adds are never answered during the test: it must not be given up on meanwhile.
            var poolOptions = BookiePool.Options()
            poolOptions.requestTimeout = .seconds(120)
            let (pool, writer) = try await Self.writerWithEntry0(fixture, poolOptions, seed: 35)
            stall.begin()
            var options = LedgerReader.Options()
            options.longPollSpreadDelay = .seconds(30)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: pool, options: options)
            let lagging = fixture.bookies[2].bookie
            let lagPolls = lagging.longPollsReceived.load(ordering: .relaxed)
            let waits = 12
            for n in 0..<waits {
                let waiting = Task { try await reader.waitForLastAddConfirmed(after: EntryID(Int64(n - 1)), timeout: .seconds(20)) }
                try await Task.sleep(for: .milliseconds(3))
                _ = try await writer.append(payload(n + 1))
                // Well below the spread delay: only the first bookie polled can answer this soon.
                let lac = try await withTimeout(10, "LAC past \(n - 1) with bookie 2's journal stalled") { try await waiting.value }
                #expect(lac >= EntryID(Int64(n)))
                #expect(try await reader.read(EntryID(Int64(n))) == payload(n))
            }
            // The lagging bookie was polled first in its turns, so the answers in time above include its own.
            #expect(lagging.longPollsReceived.load(ordering: .relaxed) - lagPolls >= UInt64(waits / 3),
                    "the lagging bookie was not polled first in its turns")
            stall.end()
            await pool.shutdown()
        }
    }

    @Test func aReaderThatKeepsUpPollsOneBookiePerEntryGetsTheEntryWithItAndAsksTheOthersWhenItFails() async throws {
        // Proves a reader waiting for each next entry as it is written long-polls one bookie per wait, not all
        // three (each wait used to poll every bookie of the ensemble, tripling the bookies' work for every
        // tailing reader), that the poll brings the entry it waited for (as a rule no READ follows), and that
        // when that bookie fails the poll, the others are asked at once.
        // No checkpoint during the test: the entries stay in the bookies' memory, where the polls take them from.
        try await withLedgerCluster(bookies: 3, checkpointInterval: .seconds(3600)) { fixture in
            var rng = SeededGenerator(seed: 33)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            _ = try await writer.append(payload(0))
            // The others are polled only after a failure or this delay: long enough here that a loaded machine
            // never reaches it, so the count is exact, and so that asking the others at once (below) is told
            // apart from asking them after the delay with a wide margin for a busy machine.
            var options = LedgerReader.Options()
            options.longPollSpreadDelay = .seconds(30)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool, options: options)
            func polls() -> UInt64 { fixture.bookies.reduce(0) { $0 + $1.bookie.longPollsReceived.load(ordering: .relaxed) } }
            func reads() -> UInt64 { fixture.bookies.reduce(0) { $0 + $1.bookie.readsReceived.load(ordering: .relaxed) } }
            let (before, readsBefore) = (polls(), reads())
            let waits = 40
            for n in 0..<waits {
                // Entries 0...n are written, and the writer tells the bookies LAC n once it is confirmed.
                let waiting = Task { try await reader.waitForLastAddConfirmed(after: EntryID(Int64(n - 1)), timeout: .seconds(5)) }
                try await Task.sleep(for: .milliseconds(3))
                _ = try await writer.append(payload(n + 1))
                let lac = try await withTimeout(10, "LAC past \(n - 1)") { try await waiting.value }
                #expect(lac >= EntryID(Int64(n)))
                #expect(try await reader.read(EntryID(Int64(n))) == payload(n))
            }
            let used = polls() - before
            #expect(used == UInt64(waits), "\(used) long polls for \(waits) waits")
            // A poll brings the entry it waited for, so reading it takes no READ, unless the polled bookie had not
            // stored it yet when it heard the LAC (its sync still running): then it answers with the LAC alone
            // rather than hold the reader (see the test above), and one READ to another bookie follows. Here a
            // bookie hears each LAC well after its own sync, but on a busy machine not always.
            #expect(reads() - readsBefore <= UInt64(waits / 4), "\(reads() - readsBefore) READs for \(waits) entries the polls should bring")

            // A bookie that fails the poll (here: stopped) sends the wait to the others at once, not after the delay.
            // The bookie polled first and one more are stopped; the one left knows LAC `waits`: the writer told
            // the bookie polled first once the last add was confirmed, and the others `lacSettleDelay` (20 ms) later,
            // being idle. Without that second step the one left would know only LAC `waits - 1`, from the last add.
            try await Task.sleep(for: .milliseconds(100))
            let ensemble = reader.metadata.fragments.last!.bookies
            let first = ensemble[quorums.writeSet(of: EntryID(Int64(waits + 1)))[0]]
            fixture.kill(first)
            fixture.kill(ensemble.first { $0 != first }!)
            let started = ContinuousClock.now
            let lac = try await withTimeout(45, "LAC with two bookies gone") {
                try await reader.waitForLastAddConfirmed(after: EntryID(Int64(waits - 1)), timeout: .seconds(5))
            }
            // Asked after the delay, the bookie left would be asked 30 s from now; at once, it answers within
            // seconds even when the machine runs the whole suite (7 s was seen there).
            #expect(lac == EntryID(Int64(waits)) && ContinuousClock.now - started < .seconds(15), "\(lac) after \(ContinuousClock.now - started)")
        }
    }

    @Test func aNewLACIsWrittenOnlyToTheBookieAReaderThatKeepsUpPollsFirst() async throws {
        // Proves each explicit LAC write goes to one bookie, not to all three, and that it is the one a reader
        // that keeps up polls first: that reader asks the others only after 30 s here, so a LAC written anywhere
        // else would leave it waiting past the test's bound. The others are told only once the writer stayed
        // idle for `lacSettleDelay` (an hour here; the test above shows them told with the default).
        try await withLedgerCluster(bookies: 3, checkpointInterval: .seconds(3600)) { fixture in
            var poolOptions = BookiePool.Options()
            poolOptions.lacSettleDelay = .seconds(3600)
            let (pool, writer) = try await Self.writerWithEntry0(fixture, poolOptions, seed: 36)
            var options = LedgerReader.Options()
            options.longPollSpreadDelay = .seconds(30)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool, options: options)
            func lacWrites() -> UInt64 {
                fixture.bookies.reduce(0) { $0 + $1.bookie.lacWritesReceived.load(ordering: .relaxed) }
            }
            let before = lacWrites()
            let waits = 30
            for n in 0..<waits {
                // Entry n is confirmed and its LAC written; entry n + 1 carries it on its header too.
                let lac = try await withTimeout(10, "LAC past \(n - 1)") {
                    try await reader.waitForLastAddConfirmed(after: EntryID(Int64(n - 1)), timeout: .seconds(5))
                }
                #expect(lac >= EntryID(Int64(n)))
                _ = try await writer.append(payload(n + 1))
            }
            // One write per LAC (entry 0's may land before the count starts); each used to go to every bookie.
            let used = lacWrites() - before
            #expect(used >= UInt64(waits - 1) && used <= UInt64(waits + 1), "\(used) LAC writes for \(waits) LACs")
            await pool.shutdown()
        }
    }

    /// A pool of the fixture's cluster with `options`, and on it a writer of a new 3/3/2 ledger with entry 0
    /// confirmed.
    private static func writerWithEntry0(_ fixture: LedgerFixture, _ options: BookiePool.Options,
                                         seed: UInt64) async throws -> (BookiePool, LedgerWriter) {
        let pool = BookiePool(cluster: fixture.cluster, options: options)
        var rng = SeededGenerator(seed: seed)
        let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: pool,
                                                   allocator: fixture.allocator, using: &rng)
        _ = try await writer.append(payload(0))
        return (pool, writer)
    }
}
