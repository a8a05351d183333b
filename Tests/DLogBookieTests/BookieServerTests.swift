import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogLedger
import DLogWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A bookie and its server in this process, on a free loopback port, with data in a temp dir.
final class TestBookie: Sendable {
    let bookie: Bookie
    let server: BookieServer
    var port: Int { server.localAddress!.port! }

    init(_ dir: TempDir, engine: EngineChoice = .blocking, tweak: (inout Bookie.Configuration) -> Void = { _ in }) throws {
        var config = Bookie.Configuration(
            journal: .init(directory: dir.sub("journal"), fileBytes: 2 << 20, filesMax: 4, engine: engine),
            journalDirectories: [dir.sub("journal")], storage: .init(ledgerDirectories: [dir.sub("ledgers")]))
        tweak(&config)
        bookie = try Bookie(configuration: config, logger: Logger(label: "test"))
        try bookie.start { failure in Issue.record("journal failed: \(failure)") }
        server = try BookieServer(bookie: bookie, host: "127.0.0.1", port: 0, maxFrameBytes: 1 << 20,
                                  logger: Logger(label: "test"))
    }

    func client() async throws -> BookieClient { try await BookieClient.connect(host: "127.0.0.1", port: port) }

    func stop() {
        bookie.stop()
        server.close()
    }
}

func failure(_ body: () async throws -> Void) async -> BookieStatus? {
    do {
        try await body()
        return nil
    } catch let f as BookieClient.Failure {
        return f.status
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite struct BookieServerTests {
    /// The defect: a READ of entry -5, a long poll after LAC -7 or a WRITE_LAC of -3 were taken as if they could
    /// name something. Each now gets BAD_REQUEST naming the id, changes nothing, and the connection serves on.
    @Test func impossibleEntryIDsAreRefusedByName() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(7, 0))
        let requests: [(BookieRequest, String)] = [
            (.read(ledger: LedgerID(7), entry: EntryID(-5), fenceWith: nil), "-5"),
            (.read(ledger: LedgerID(7), entry: EntryID(.min), fenceWith: testKey), "\(Int64.min)"),
            (.readLAC(ledger: LedgerID(7), longPoll: .init(previous: EntryID(-7), timeoutMilliseconds: 10_000)), "-7"),
            (.writeLAC(ledger: LedgerID(7), masterKey: testKey, lac: EntryID(-3)), "-3"),
        ]
        for (request, id) in requests {
            guard case .failed(.badRequest, let message) = try await c.send(request) else {
                Issue.record("\(request) was not refused")
                continue
            }
            #expect(message.contains(id) && message.contains("L7"), "\(message)")
        }
        #expect(b.bookie.storage.ledgerState(LedgerID(7))?.fenced == false, "the refused fencing READ fenced nothing")
        #expect(try await c.read(ledger: LedgerID(7), entry: .none) == entry(7, 0))
    }

    /// Adds are read back byte-exact, entry -1 is the last entry, and missing ledgers and entries say so.
    @Test func addAndRead() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        for e in 0..<20 { try await c.add(key: testKey, entry: entry(7, Int64(e))) }
        for e in 0..<20 { #expect(try await c.read(ledger: LedgerID(7), entry: EntryID(Int64(e))) == entry(7, Int64(e))) }
        #expect(try await c.read(ledger: LedgerID(7), entry: .none) == entry(7, 19))
        #expect(await failure { _ = try await c.read(ledger: LedgerID(8), entry: EntryID(0)) } == .noLedger)
        #expect(await failure { _ = try await c.read(ledger: LedgerID(7), entry: EntryID(20)) } == .noEntry)
        await c.close()
    }

    /// The master key of the first add binds the ledger; a corrupt entry is refused by its CRC.
    @Test func masterKeyAndChecksum() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(1, 0))
        #expect(await failure { try await c.add(key: MasterKey(password: "other"), entry: entry(1, 1)) } == .unauthorized)
        var bad = entry(1, 1)
        bad[bad.count - 1] ^= 1
        #expect(await failure { try await c.add(key: testKey, entry: bad) } == .corruptEntry)
        #expect(await failure { _ = try await c.read(ledger: LedgerID(1), entry: EntryID(1)) } == .noEntry)
        await c.close()
    }

    /// After a fence, normal adds get FENCED and recovery adds succeed — also after a restart.
    @Test func fencingIsDurable() async throws {
        let dir = TempDir()
        var b = try TestBookie(dir)
        var c = try await b.client()
        try await c.add(key: testKey, entry: entry(3, 0))
        try await c.add(key: testKey, entry: entry(3, 1))
        #expect(await failure { _ = try await c.read(ledger: LedgerID(3), entry: .none, fenceWith: MasterKey(password: "x")) }
                == .unauthorized)
        #expect(try await c.read(ledger: LedgerID(3), entry: .none, fenceWith: testKey) == entry(3, 1))
        #expect(await failure { try await c.add(key: testKey, entry: entry(3, 2)) } == .fenced)
        try await c.add(key: testKey, entry: entry(3, 2), recovery: true)
        // Fencing a ledger this bookie never saw still blocks later adds to it.
        #expect(await failure { _ = try await c.read(ledger: LedgerID(4), entry: .none, fenceWith: testKey) } == .noEntry)
        #expect(await failure { try await c.add(key: testKey, entry: entry(4, 0)) } == .fenced)
        await c.close()
        b.stop()

        b = try TestBookie(dir)
        defer { b.stop() }
        c = try await b.client()
        #expect(await failure { try await c.add(key: testKey, entry: entry(3, 3)) } == .fenced)
        #expect(await failure { try await c.add(key: testKey, entry: entry(4, 0)) } == .fenced)
        #expect(try await c.read(ledger: LedgerID(3), entry: EntryID(2)) == entry(3, 2))
        await c.close()
    }

    /// READ_LAC reports piggybacked and explicit LAC; a long poll answers as soon as LAC passes the
    /// previous value, and at its timeout otherwise.
    @Test func lacAndLongPoll() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(9, 0))
        try await c.add(key: testKey, entry: entry(9, 1))
        #expect(try await c.send(.readLAC(ledger: LedgerID(9), longPoll: nil)) == .lac(lac: EntryID(0), lastEntry: EntryID(1)))
        #expect(try await c.send(.writeLAC(ledger: LedgerID(9), masterKey: testKey, lac: EntryID(1))) == .done)
        #expect(try await c.send(.readLAC(ledger: LedgerID(9), longPoll: nil)) == .lac(lac: EntryID(1), lastEntry: EntryID(1)))

        let started = ContinuousClock.now
        let poll = c.sendFuture(.readLAC(ledger: LedgerID(9), longPoll: .init(previous: EntryID(1), timeoutMilliseconds: 10_000)))
        try await Task.sleep(for: .milliseconds(50))
        try await c.add(key: testKey, entry: entry(9, 2, lac: 2))
        // Woken when the add was taken, before its entry was durable (and counted).
        #expect(try await poll.get() == .lac(lac: EntryID(2), lastEntry: EntryID(1)))
        #expect(ContinuousClock.now - started < .seconds(9), "answered by the add, not at the 10 s timeout")

        let timedOut = try await c.send(.readLAC(ledger: LedgerID(9), longPoll: .init(previous: EntryID(2), timeoutMilliseconds: 100)))
        #expect(timedOut == .lac(lac: EntryID(2), lastEntry: EntryID(2)))

        // A ledger the bookie does not have yet: the poll waits for it (a tailing reader of a new ledger must
        // not spin), answers once its entries bring LAC past `previous`, and reports -1 at a timeout.
        let early = c.sendFuture(.readLAC(ledger: LedgerID(10), longPoll: .init(previous: EntryID(-1), timeoutMilliseconds: 10_000)))
        try await Task.sleep(for: .milliseconds(100))
        // Answered at once (the ledger unknown), it would say -1.
        try await c.add(key: testKey, entry: entry(10, 0))
        try await c.add(key: testKey, entry: entry(10, 1))
        #expect(try await early.get() == .lac(lac: EntryID(0), lastEntry: EntryID(0)))
        let unknown = try await c.send(.readLAC(ledger: LedgerID(11), longPoll: .init(previous: EntryID(-1), timeoutMilliseconds: 100)))
        #expect(unknown == .lac(lac: EntryID(-1), lastEntry: EntryID(-1)))
        await c.close()
    }

    /// A long poll that asks for the entry (flag 0x0002) gets the entry after its previous LAC with the answer
    /// once the LAC covers it, byte for byte as READ returns it; when the LAC does not cover it, or a plain poll,
    /// the answer is the LAC alone.
    @Test func longPollWithTheNextEntry() async throws {
        let dir = TempDir()
        // No checkpoint during the test: the entries stay in memory, where the poll takes them from.
        let b = try TestBookie(dir) { $0.checkpointInterval = .seconds(3600) }
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(12, 0))
        let poll = c.sendFuture(.readLAC(ledger: LedgerID(12), longPoll: .init(previous: EntryID(-1), timeoutMilliseconds: 10_000, withEntry: true)))
        try await Task.sleep(for: .milliseconds(50))
        try await c.add(key: testKey, entry: entry(12, 1, lac: 0))
        // Woken when entry 1 was taken, before it was durable (and counted).
        #expect(try await poll.get() == .lacAndEntry(lac: EntryID(0), lastEntry: EntryID(0), entry: entry(12, 0)))
        #expect(try await c.read(ledger: LedgerID(12), entry: EntryID(0)) == entry(12, 0))
        // Answered at once (LAC 0 is past -1 already), with the entry.
        #expect(try await c.send(.readLAC(ledger: LedgerID(12), longPoll: .init(previous: EntryID(-1), timeoutMilliseconds: 100, withEntry: true)))
                == .lacAndEntry(lac: EntryID(0), lastEntry: EntryID(1), entry: entry(12, 0)))
        // Timed out with the LAC not past `previous`: nothing to bring.
        #expect(try await c.send(.readLAC(ledger: LedgerID(12), longPoll: .init(previous: EntryID(0), timeoutMilliseconds: 100, withEntry: true)))
                == .lac(lac: EntryID(0), lastEntry: EntryID(1)))
        // Without the flag, the LAC alone.
        #expect(try await c.send(.readLAC(ledger: LedgerID(12), longPoll: .init(previous: EntryID(-1), timeoutMilliseconds: 100)))
                == .lac(lac: EntryID(0), lastEntry: EntryID(1)))
        await c.close()
    }

    /// DELETE_LEDGER removes the ledger; GET_INFO reports journal counters as JSON.
    @Test func deleteAndInfo() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(11, 0))
        #expect(try await c.send(.deleteLedger(ledger: LedgerID(11))) == .done)
        #expect(await failure { _ = try await c.read(ledger: LedgerID(11), entry: EntryID(0)) } == .noLedger)
        #expect(try await c.send(.deleteLedger(ledger: LedgerID(11))) == .failed(.noLedger, message: "L11 is not on this bookie"))
        let info = try JSONSerialization.jsonObject(with: Data(try await c.info().utf8)) as! [String: Any]
        #expect(info["state"] as? String == "writable")
        let journals = info["journals"] as! [[String: Any]]
        #expect((journals[0]["recordsSynced"] as? NSNumber)?.intValue ?? 0 >= 3)
        await c.close()
    }

    /// Past the disk-usage threshold adds get READ_ONLY while reads go on.
    @Test func readOnlyMode() async throws {
        let dir = TempDir()
        // Thresholds below the disk's current usage make it count as full, as a nearly full disk would.
        let usage = try FileSystem.usage(of: dir.path).usedFraction
        let b = try TestBookie(dir) {
            $0.diskUsageThreshold = usage / 2
            $0.diskUsageLowWater = usage / 4
            $0.diskCheckInterval = .milliseconds(10)
        }
        defer { b.stop() }
        let c = try await b.client()
        let deadline = ContinuousClock.now + .seconds(5)
        while !b.bookie.isReadOnly && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(b.bookie.isReadOnly)
        #expect(try await c.info().contains("\"state\":\"read-only\""))
        try await c.add(key: testKey, entry: entry(1, 0), recovery: true)
        #expect(await failure { try await c.add(key: testKey, entry: entry(1, 1)) } == .readOnly)
        try await c.add(key: testKey, entry: entry(1, 1), recovery: true)
        #expect(try await c.read(ledger: LedgerID(1), entry: EntryID(0)) == entry(1, 0))
        await c.close()
    }

    /// Garbage on one connection closes that connection; another client is served throughout.
    @Test func malformedInputClosesOnlyThatConnection() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let good = try await b.client()
        for (i, garbage) in [[UInt8](repeating: 0xFF, count: 64), [0, 0, 0, 3, 1, 2, 3], [0, 0, 0, 12, 1, 77, 0, 0] + [UInt8](repeating: 0, count: 8)].enumerated() {
            let bad = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: b.port).get()
            try await bad.writeAndFlush(ByteBuffer(bytes: garbage))
            try await bad.closeFuture.get()  // the bookie hangs up on this connection only
            try await good.add(key: testKey, entry: entry(2, Int64(i)))
        }
        #expect(try await good.read(ledger: LedgerID(2), entry: .none) == entry(2, 2))
        await good.close()
    }
}


@Suite struct FencingRaceTests {
    /// While a writer pipelines adds, a recoverer fences: every add acknowledged to the writer, even after the
    /// fence answered, is at or below the last entry the fence reported. (A fence answered before an add it
    /// raced with would let the old writer think data is safe that recovery will not see.)
    @Test func noAddIsAcknowledgedPastTheFence() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        for round in 0..<5 {
            let ledger = UInt64(100 + round)
            let writer = try await b.client()
            let recoverer = try await b.client()
            var futures: [(Int64, EventLoopFuture<BookieResponse>)] = []
            for e in 0..<400 {
                futures.append((Int64(e), writer.sendFuture(.add(masterKey: testKey, entry: entry(ledger, Int64(e)),
                                                                 recovery: false))))
                if e == 150 {
                    // Fence in the middle of the stream, once the first add is known to exist.
                    _ = try await futures[0].1.get()
                }
            }
            let fenced = try await recoverer.read(ledger: LedgerID(ledger), entry: .none, fenceWith: testKey)
            let lastSeenByFence = try EntryCodec.validate(fenced).entry.rawValue
            var acked: [Int64] = []
            for (e, f) in futures {
                if case .added = try await f.get() { acked.append(e) }
            }
            #expect(!acked.isEmpty)
            #expect(acked.allSatisfy { $0 <= lastSeenByFence },
                    "round \(round): acked up to \(acked.max()!) but the fence saw \(lastSeenByFence)")
            await writer.close()
            await recoverer.close()
        }
    }
}

@Suite struct DeleteRecreateTests {
    /// Delete, then fence and add under the same id before the delete is applied: the fence holds (the add
    /// is refused), and after a restart the ledger is the fenced new one, without the deleted entries.
    @Test func fenceAfterDeleteHolds() async throws {
        let dir = TempDir()
        var b = try TestBookie(dir)
        var c = try await b.client()
        for e in 0..<5 { try await c.add(key: testKey, entry: entry(21, Int64(e))) }
        let delete = c.sendFuture(.deleteLedger(ledger: LedgerID(21)))
        let fence = c.sendFuture(.read(ledger: LedgerID(21), entry: .none, fenceWith: testKey))
        let add = c.sendFuture(.add(masterKey: testKey, entry: entry(21, 0), recovery: false))
        #expect(try await delete.get() == .done)
        if case .failed(let status, _) = try await fence.get() { #expect(status == .noEntry) }
        #expect(try await add.get() == .failed(.fenced, message: "L21 is fenced"))
        await c.close()
        b.stop()
        b = try TestBookie(dir)
        defer { b.stop() }
        c = try await b.client()
        #expect(await failure { try await c.add(key: testKey, entry: entry(21, 0)) } == .fenced)
        #expect(await failure { _ = try await c.read(ledger: LedgerID(21), entry: EntryID(3)) } == .noEntry)
        await c.close()
    }
}

@Suite struct ConnectionBoundTests {
    /// A client that piles up unanswered requests is stopped being read at the per-connection bound (the
    /// bookie holds no more than that for it), and is read again once answers go out.
    @Test func outstandingRequestsAreBounded() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        try await c.add(key: testKey, entry: entry(5, 0))
        let polls = (0..<16_000).map { _ in
            c.sendFuture(.readLAC(ledger: LedgerID(5), longPoll: .init(previous: EntryID(100), timeoutMilliseconds: 30_000)))
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while b.bookie.storage.waitingLongPolls < BookieRequestHandler.outstandingMax && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(200))
        // Frames already read when reading stopped are still served: at most what one readable event brings
        // (NIO reads up to 4 times 64 KiB per event; a long-poll READ_LAC frame is 36 bytes), far from all 16000.
        let waiting = b.bookie.storage.waitingLongPolls
        let oneEvent = 4 * (65_536 / 36 + 1)
        #expect(waiting >= BookieRequestHandler.outstandingMax && waiting <= BookieRequestHandler.outstandingMax + oneEvent,
                "\(waiting) waiting")
        // LAC past 100 answers every waiting poll; reading resumes and the rest are answered at once.
        let other = try await b.client()
        try await other.add(key: testKey, entry: entry(5, 1, lac: 101))
        // Those waiting are woken when the add is taken (its entry not yet counted), the rest may be answered
        // after it is durable.
        let answers: [BookieResponse] = [.lac(lac: EntryID(101), lastEntry: EntryID(0)), .lac(lac: EntryID(101), lastEntry: EntryID(1))]
        for p in polls { #expect(answers.contains(try await p.get())) }
        #expect(b.bookie.storage.waitingLongPolls == 0)
        await c.close()
        await other.close()
    }
}

@Suite struct FailingCheckpointTests {
    /// When checkpoints cannot write (here: the entry-log names are blocked, as a full or broken ledger disk
    /// would), adds get back-pressure whose message says why, GET_INFO reports it, nothing acknowledged is
    /// lost, and adds resume once checkpoints succeed again.
    @Test func refusalNamesTheFailingCheckpoint() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir) {
            $0.storage.writeCacheBytes = 16 * 1024
            $0.checkpointInterval = .milliseconds(20)
        }
        defer { b.stop() }
        for id in 1...1500 { try FileSystem.makeDirectory(dir.sub("ledgers") + "/entrylog-\(id).log.tmp") }
        let c = try await b.client()
        var acked: [Int64] = []
        var refusal: String? = nil
        for e in 0..<2000 {
            let r = try await c.send(.add(masterKey: testKey, entry: entry(8, Int64(e), size: 1000), recovery: false))
            if case .failed(.tooManyRequests, let message) = r { refusal = message; break }
            if case .added = r { acked.append(Int64(e)) }
        }
        let message = try #require(refusal, "adds were never refused")
        #expect(message.contains("checkpoints are failing"))
        #expect(try await c.info().contains("lastCheckpointError"))
        // Failing checkpoints back off instead of retrying at every ask (each try opens a new entry log).
        let failuresBefore = try await Self.checkpointFailures(c)
        try await Task.sleep(for: .seconds(1))
        let failuresAfter = try await Self.checkpointFailures(c)
        #expect(failuresBefore >= 1 && failuresAfter - failuresBefore <= 8,
                "checkpoint attempts in 1 s of failing: \(failuresAfter - failuresBefore)")
        for id in 1...1500 { try FileManager.default.removeItem(atPath: dir.sub("ledgers") + "/entrylog-\(id).log.tmp") }
        let deadline = ContinuousClock.now + .seconds(10)
        var resumed = false
        while !resumed && ContinuousClock.now < deadline {
            if case .added = try await c.send(.add(masterKey: testKey, entry: entry(8, Int64(acked.count), size: 1000),
                                                   recovery: false)) { resumed = true } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(resumed)
        for e in acked { #expect(try await c.read(ledger: LedgerID(8), entry: EntryID(e)) == entry(8, e, size: 1000)) }
        let settled = ContinuousClock.now + .seconds(5)
        while try await Self.checkpointFailures(c) != 0, ContinuousClock.now < settled {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await Self.checkpointFailures(c) == 0, "the count is reset by the first success")
        await c.close()
    }

    static func checkpointFailures(_ c: BookieClient) async throws -> Int {
        let info = try JSONSerialization.jsonObject(with: Data(try await c.info().utf8)) as? [String: Any]
        return try #require(info?["checkpointFailures"] as? Int)
    }
}
