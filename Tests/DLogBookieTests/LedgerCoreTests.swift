@testable import DLogBookie
import DLogWire
import Testing

/// The bookie's ledger state machine driven by events alone: no disk, no journal, no threads. Each test feeds
/// the events a bookie would see in one order and checks the decisions and answers that come out.
@Suite struct LedgerCoreTests {
    private func core() -> LedgerCore { LedgerCore() }

    private func add(_ l: UInt64, key: MasterKey = testKey, lac: Int64 = -1, recovery: Bool = false) -> LedgerCore.Request {
        .add(LedgerID(l), key: key, piggybackedLAC: lac, recovery: recovery)
    }

    /// Decides and takes `request` as the driver does when the journal accepts it; returns the decision.
    @discardableResult
    private func take(_ request: LedgerCore.Request, _ c: inout LedgerCore) -> LedgerCore.Decision {
        let decision = c.decide(request)
        var firings = LedgerCore.Firings()
        if case .journal = decision { c.taken(request, &firings) }
        return decision
    }

    private func durable(_ records: [JournalRecord], _ c: inout LedgerCore, replaying: Bool = false) -> [(Int64, Int64)] {
        var firings = LedgerCore.Firings()
        for r in records { c.durable(r, replaying: replaying, &firings) }
        return firings.due.map { ($0.lac, $0.last) }
    }

    @Test("a new ledger's first add asks for its key record; later adds do not; a wrong key is refused")
    func keyRecordsAndKeys() {
        var c = core()
        #expect(take(add(1), &c) == .journal(withKey: true))
        #expect(take(add(1), &c) == .journal(withKey: false))
        #expect(c.decide(add(1, key: MasterKey(password: "other"))) == .refuse(.keyMismatch))
        #expect(c.decide(.fence(LedgerID(1), key: MasterKey(password: "other"))) == .refuse(.keyMismatch))
    }

    @Test("deciding changes nothing: a request the journal refuses leaves no ledger and no fence behind")
    func decidingAloneChangesNothing() {
        var c = core()
        #expect(c.decide(add(5)) == .journal(withKey: true))
        #expect(c.decide(.fence(LedgerID(5), key: testKey)) == .journal(withKey: false))
        #expect(c.ledgers[5] == nil)
        take(add(5), &c)
        #expect(c.decide(.fence(LedgerID(5), key: testKey)) == .journal(withKey: false))
        #expect(c.decide(add(5)) == .journal(withKey: false), "a fence only decided on does not fence")
    }

    @Test("a fence taken refuses every later add but a recovery add, before the fence is durable")
    func fenceHoldsFromTheMomentItIsTaken() {
        var c = core()
        take(add(2), &c)
        take(.fence(LedgerID(2), key: testKey), &c)
        #expect(c.decide(add(2)) == .refuse(.fenced))
        #expect(c.decide(add(2, recovery: true)) == .journal(withKey: false))
        _ = durable([keyRecord(2), addRecord(2, 0)], &c)
        #expect(c.ledgers[2]?.fenced == true, "the durable add must not unfence it")
    }

    @Test("the cache refuses adds at its bound, all shards together, counting the caches being flushed, until a checkpoint is written")
    func cacheBoundCountsTheFlushingCache() {
        let shards = LedgerShards(manifest: Manifest(), shardCount: 4, cacheBytesMax: 300)
        let accept: (Bool) -> JournalError? = { _ in nil }
        // Ledgers in different shards: the bound is the sum of theirs.
        let ledgers = (UInt64(1)...40).reduce(into: [UInt64]()) { found, l in
            if !found.contains(where: { LedgerShards.index($0, of: 4) == LedgerShards.index(l, of: 4) }) { found.append(l) }
        }.prefix(2)
        for l in ledgers {
            #expect(shards.take(add(l), journal: accept).refusal == nil)
            shards.durable([keyRecord(l)] + (0..<2).map { addRecord(l, $0) }, journal: 0, through: nil)
        }
        #expect(shards.take(add(ledgers.first!), journal: accept).refusal == .core(.cacheFull))
        let freeze = shards.checkpointStarted()
        #expect(freeze.live.map(\.ledger.rawValue) == ledgers.sorted())
        #expect(shards.take(add(ledgers.first!), journal: accept).refusal == .core(.cacheFull),
                "the frozen caches still hold their bytes")
        _ = shards.withEveryShard { shards.checkpointWritten(nil, freeze, $0) }
        shards.flushEnded()
        #expect(shards.take(add(ledgers.first!), journal: accept).refusal == nil)
    }

    @Test("a long poll is answered by the LAC an add carries when taken, before the entry it covers is durable here")
    func longPollsHearLACsEarly() {
        var c = core()
        take(add(4), &c)
        _ = durable([keyRecord(4), addRecord(4, 0)], &c)
        guard case .waiting = c.watch(LedgerID(4), previous: 0, fire: { _, _ in }),
              case .waiting = c.watch(LedgerID(4), previous: 0, fire: { _, _ in }) else {
            Issue.record("LAC 0 must not answer a poll past 0")
            return
        }
        var firings = LedgerCore.Firings()
        c.taken(add(4, lac: 1), &firings)
        // Entry 1 is not durable here: this bookie may be the one its quorum did not wait for, and a poll held
        // until its own sync would make a tailing reader wait for the slowest copy.
        #expect(firings.due.map { $0.lac } == [1, 1], "both polls hear LAC 1 when the add that carries it is taken")
        #expect(firings.due.map { $0.last } == [0, 0], "while entry 1 is not stored here yet")
        #expect(c.watchers.isEmpty)
    }

    @Test("a cancelled watcher is gone and is never fired; cancelling twice reports it fired or gone")
    func cancelledWatchersDoNotFire() {
        var c = core()
        guard case .waiting(let id) = c.watch(LedgerID(9), previous: -1, fire: { _, _ in }) else {
            Issue.record("a ledger not here yet waits")
            return
        }
        let first = c.cancelWatch(LedgerID(9), id: id)
        let second = c.cancelWatch(LedgerID(9), id: id)
        #expect(first && !second)
        take(add(9, lac: 5), &c)
        #expect(durable([keyRecord(9), addRecord(9, 0, size: 8)], &c).isEmpty)
    }

    @Test("records taken before a delete are not applied to the ledger created anew after it")
    func recordsOfADeletedLedgerDoNotReachItsSuccessor() {
        var c = core()
        take(add(6), &c)  // its records are queued, not durable yet
        #expect(c.decide(.delete(LedgerID(6))) == .journal(withKey: false))
        take(.delete(LedgerID(6)), &c)
        #expect(c.decide(.delete(LedgerID(6))) == .refuse(.noLedger))
        take(add(6, key: MasterKey(password: "new")), &c)
        _ = durable([keyRecord(6), addRecord(6, 0)], &c)
        #expect(c.cache[LedgerID(6)] == nil, "the old ledger's entry is skipped")
        #expect(c.ledgers[6]?.hasKey(MasterKey(password: "new")) == true)
        var delete = [UInt8]()
        delete.appendBigEndian(UInt64(6))
        _ = durable([JournalRecord(kind: .delete, payload: delete)], &c)
        #expect(c.deletesPending.isEmpty)
        _ = durable([addRecord(6, 0)], &c)
        #expect(c.cache[LedgerID(6)]?.count == 1, "the new ledger's own records apply")
    }

    @Test("a checkpoint does not list a ledger deleted while its entry log was written, even when created anew since")
    func checkpointLeavesOutLedgersDeletedDuringIt() {
        let shards = LedgerShards(manifest: Manifest(), shardCount: 4, cacheBytesMax: 1 << 20)
        let accept: (Bool) -> JournalError? = { _ in nil }
        for l: UInt64 in [7, 8] { _ = shards.take(add(l), journal: accept) }
        shards.durable([keyRecord(7), addRecord(7, 0), keyRecord(8), addRecord(8, 0)], journal: 0, through: nil)
        let freeze = shards.checkpointStarted()
        _ = shards.take(.delete(LedgerID(7)), journal: accept)
        _ = shards.take(add(7), journal: accept)
        let written = EntryLogInfo(id: freeze.entryLogID, directory: 0, totalBytes: 4096, dataBytes: 200,
                                   ledgers: [7: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100),
                                             8: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100)])
        _ = shards.withEveryShard { shards.checkpointWritten(written, freeze, $0) }
        shards.flushEnded()
        #expect(shards.catalog.withLock { $0.manifest.entryLogs.map { $0.ledgers.map(\.key) } } == [[8]])
        #expect(shards.shards.allSatisfy { $0.state.withLock { $0.deletedAt.isEmpty } },
                "delete counts are kept only while a flush runs")
    }

    @Test("a delete leaves the entry logs' lists in the step it is taken; replay's delete too")
    func deletesLeaveTheEntryLogs() {
        let shards = LedgerShards(manifest: Manifest(), shardCount: 2, cacheBytesMax: 1 << 20)
        _ = shards.take(add(13), journal: { _ in nil })
        shards.durable([keyRecord(13), addRecord(13, 0)], journal: 0, through: nil)
        let listing = EntryLogInfo(id: 1, directory: 0, totalBytes: 4096, dataBytes: 100,
                                   ledgers: [13: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100)])
        shards.catalog.withLock { $0.manifest.entryLogs = [listing] }
        _ = shards.take(.delete(LedgerID(13)), journal: { _ in nil })
        #expect(shards.catalog.withLock { $0.manifest.entryLogs[0].ledgers.isEmpty && $0.manifest.unlisted == [13] })
        var delete = [UInt8]()
        delete.appendBigEndian(UInt64(14))
        shards.catalog.withLock { $0.manifest.entryLogs = [listing, EntryLogInfo(id: 2, directory: 0, totalBytes: 4096,
            dataBytes: 100, ledgers: [14: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100)])] }
        shards.durable([keyRecord(14), JournalRecord(kind: .delete, payload: delete)], journal: 0, through: nil,
                       replaying: true)
        #expect(shards.catalog.withLock { $0.manifest.entryLogs[1].ledgers.isEmpty })
    }

    @Test("a failed checkpoint puts its entries back, and entries added meanwhile win")
    func failedCheckpointRestoresTheCache() {
        var c = core()
        take(add(10), &c)
        _ = durable([keyRecord(10), addRecord(10, 0), addRecord(10, 1)], &c)
        let freeze = c.checkpointStarted()
        let newer = entry(10, 1, size: 7)
        _ = durable([JournalRecord(kind: .add, payload: newer)], &c)
        c.checkpointFailed(freeze)
        c.flushEnded()
        #expect(c.cache[LedgerID(10)]?[1] == newer)
        #expect(c.cache[LedgerID(10)]?.count == 2)
        #expect(c.flushing == nil && c.flushingBytes == 0)
        #expect(c.cacheBytes == c.cache[LedgerID(10)]!.bytes)
    }

    @Test("replay applies deletes itself: nothing changed the state ahead of the journal")
    func replayDropsDeletedLedgers() {
        var c = core()
        var delete = [UInt8]()
        delete.appendBigEndian(UInt64(11))
        _ = durable([keyRecord(11), addRecord(11, 0), JournalRecord(kind: .delete, payload: delete)], &c, replaying: true)
        #expect(c.ledgers[11] == nil && c.cache.isEmpty && c.cacheBytes == 0)
    }

    @Test("WRITE_LAC needs the ledger and its key, and answers long polls at once")
    func writeLACAnswersPolls() {
        var c = core()
        var firings = LedgerCore.Firings()
        #expect(c.writeLAC(LedgerID(12), key: testKey, lac: 3, &firings) == .noLedger)
        take(add(12), &c)
        #expect(c.writeLAC(LedgerID(12), key: MasterKey(password: "x"), lac: 3, &firings) == .keyMismatch)
        _ = c.watch(LedgerID(12), previous: 2, fire: { _, _ in })
        #expect(c.writeLAC(LedgerID(12), key: testKey, lac: 3, &firings) == nil)
        #expect(firings.due.map { $0.lac } == [3])
    }
}

extension Result where Success == Void {
    /// Why a step was refused; nil when it was taken.
    var refusal: Failure? {
        if case .failure(let why) = self { return why }
        return nil
    }
}
