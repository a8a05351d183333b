@testable import DLogBookie
@testable import DLogLedger
import DLogTestSupport
import DLogWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Adds taken as a run (all the adds one read of a connection brought): one step per shard, one journal offer,
/// and the same outcome as taking them one by one.
@Suite struct AddRunTests {
    private func add(_ l: UInt64, key: MasterKey = testKey, recovery: Bool = false) -> LedgerCore.Request {
        .add(LedgerID(l), key: key, piggybackedLAC: -1, recovery: recovery)
    }

    private let otherKey = MasterKey(password: "other")

    private func status(_ response: BookieResponse) -> BookieStatus? {
        if case .failed(let status, _) = response { return status }
        return nil
    }

    @Test("a run's adds are decided as if the earlier ones were taken: one key record per new ledger, another key refused")
    func decidedInTurn() {
        var c = LedgerCore()
        var firings = LedgerCore.Firings()
        c.taken(add(1), &firings)
        c.taken(.fence(LedgerID(2), key: testKey), &firings)
        let run = [add(3), add(3), add(1), add(3, key: otherKey), add(2), add(2, recovery: true), add(1, key: otherKey)]
        #expect(c.decide(adds: run) == [.journal(withKey: true), .journal(withKey: false), .journal(withKey: false),
                                         .refuse(.keyMismatch), .refuse(.fenced), .journal(withKey: false),
                                         .refuse(.keyMismatch)])
        // One by one, the same decisions.
        var alone = c
        let oneByOne = run.map { request -> LedgerCore.Decision in
            let d = alone.decide(request)
            if case .journal = d { alone.taken(request, &firings) }
            return d
        }
        #expect(oneByOne == c.decide(adds: run))
        #expect(c.ledgers[3] == nil, "deciding changes nothing")
    }

    @Test("a run is journaled in one offer per shard; a refused offer takes none of that shard's adds", arguments: [1, 4])
    func oneOfferPerShard(shardCount: Int) {
        let shards = LedgerShards(manifest: Manifest(), shardCount: shardCount, cacheBytesMax: 1 << 20)
        let ledgers: [UInt64] = [11, 12, 13, 14, 15, 16]
        let run = ledgers.flatMap { [add($0), add($0)] }
        let offers = Mutex<[[(index: Int, withKey: Bool)]]>([])
        let results = shards.take(adds: run) { accepted in
            offers.withLock { $0.append(accepted) }
            return nil
        }
        #expect(results.allSatisfy { $0.refusal == nil })
        let taken = offers.withLock { $0 }
        let shardsUsed = Set(ledgers.map { LedgerShards.index($0, of: shardCount) })
        #expect(taken.count == shardsUsed.count)
        #expect(taken.flatMap { $0 }.map(\.index).sorted() == Array(run.indices))
        #expect(taken.flatMap { $0 }.filter(\.withKey).map { run[$0.index] }.count == ledgers.count,
                "one key record per new ledger")
        for offer in taken { #expect(offer.map(\.index) == offer.map(\.index).sorted(), "in the run's order") }

        // The journal refuses: nothing of the run is taken, and each add is answered with the journal's reason.
        let refused = shards.take(adds: [add(21), add(22, key: otherKey)]) { _ in .queueFull }
        #expect(refused.map(\.refusal) == [.journal(.queueFull), .journal(.queueFull)])
        #expect(shards.withShard(21) { $0.ledgers[21] == nil } && shards.withShard(22) { $0.ledgers[22] == nil })
    }

    /// A journal queue shorter than a run could never take the run whole: its adds go one by one instead, and
    /// are stored (before, every add of the run was refused as if the queue were full).
    @Test func aRunLongerThanTheJournalQueueIsAddedOneByOne() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir) { $0.journal.queueCountMax = 4 }
        defer { b.stop() }
        let answers = Mutex<[BookieResponse]>([])
        b.bookie.add(run: (0 ..< 8).map { e in
            Bookie.RunAdd(key: testKey, entry: entry(51, Int64(e)), recovery: false,
                          answer: .reply { r in answers.withLock { $0.append(r) } })
        })
        let deadline = ContinuousClock.now + .seconds(10)
        while answers.withLock({ $0.count }) < 8 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let got = answers.withLock { $0 }
        #expect(got.count == 8)
        #expect(got.contains { if case .added = $0 { true } else { false } }, "\(got)")
        #expect(got.allSatisfy { if case .added = $0 { true } else { status($0) == .tooManyRequests } }, "\(got)")
    }

    /// Requests of one connection that arrive in one read are served in order: the adds before a fence are
    /// taken before it, the adds after it are refused, and a new ledger's second key is refused within the run.
    @Test func aReadsRequestsAreServedInOrder() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let client = try await b.client()
        defer { Task { await client.close() } }
        let l: UInt64 = 41
        let requests: [BookieRequest] = [
            .add(masterKey: testKey, entry: entry(l, 0), recovery: false),
            .add(masterKey: otherKey, entry: entry(l, 1), recovery: false),
            .add(masterKey: testKey, entry: entry(l, 1), recovery: false),
            .read(ledger: LedgerID(l), entry: .none, fenceWith: testKey),
            .add(masterKey: testKey, entry: entry(l, 2), recovery: false),
            .add(masterKey: testKey, entry: entry(l + 1, 0), recovery: false),
        ]
        // One write down the pipeline: the client handler encodes the batch into one buffer.
        let answers = requests.map { _ in client.channel.eventLoop.makePromise(of: BookieResponse.self) }
        try await client.channel.writeAndFlush(
            zip(requests, answers).map { ClientHandler.Outbound(request: $0, waiter: .promise($1)) })
        var got: [BookieResponse] = []
        for answer in answers { got.append(try await answer.futureResult.get()) }
        #expect(got[0] == .added(ledger: LedgerID(l), entry: EntryID(0)))
        #expect(status(got[1]) == .unauthorized)
        #expect(got[2] == .added(ledger: LedgerID(l), entry: EntryID(1)))
        #expect(got[3] == .entry(entry(l, 1)), "the fence's read sees both adds before it")
        #expect(status(got[4]) == .fenced)
        #expect(got[5] == .added(ledger: LedgerID(l + 1), entry: EntryID(0)))
    }
}
