@testable import DLogBookie
import DLogWire
import Testing

/// The bookie's ledger state machine driven by events alone: no disk, no journal, no threads. Each test feeds
/// the events a bookie would see in one order and checks the decisions and answers that come out.
@Suite struct LedgerCoreTests {
    private func core(cacheBytesMax: Int = 1 << 20) -> LedgerCore {
        LedgerCore(manifest: Manifest(), cacheBytesMax: cacheBytesMax)
    }

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
        c.durable(records, journal: 0, through: nil, replaying: replaying, &firings)
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
        #expect(c.manifest.ledgers[5] == nil)
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
        #expect(c.manifest.ledgers[2]?.fenced == true, "the durable add must not unfence it")
    }

    @Test("the cache refuses adds at its bound, counting the cache being flushed, until a checkpoint is written")
    func cacheBoundCountsTheFlushingCache() {
        var c = core(cacheBytesMax: 200)
        take(add(3), &c)
        _ = durable([keyRecord(3)] + (0..<3).map { addRecord(3, $0) }, &c)
        #expect(c.decide(add(3)) == .refuse(.cacheFull))
        let freeze = c.checkpointStarted()
        #expect(freeze.live == [LedgerID(3)] && freeze.frozen[LedgerID(3)]?.count == 3)
        #expect(c.decide(add(3)) == .refuse(.cacheFull), "the frozen cache still holds its bytes")
        _ = c.checkpointWritten(nil, freeze)
        c.flushEnded()
        #expect(c.decide(add(3)) == .journal(withKey: false))
    }

    @Test("a long poll is answered by the LAC an add carries when taken, and one that brings the entry only once it is durable")
    func longPollsHearLACsEarlyAndEntriesWhenDurable() {
        var c = core()
        take(add(4), &c)
        _ = durable([keyRecord(4), addRecord(4, 0)], &c)
        guard case .waiting = c.watch(LedgerID(4), previous: 0, bringing: nil, fire: { _, _ in }),
              case .waiting = c.watch(LedgerID(4), previous: 0, bringing: 1, fire: { _, _ in }) else {
            Issue.record("LAC 0 must not answer a poll past 0")
            return
        }
        var firings = LedgerCore.Firings()
        c.taken(add(4, lac: 1), &firings)
        #expect(firings.due.map { $0.lac } == [1], "only the poll that brings no entry hears the early LAC")
        #expect(durable([addRecord(4, 1)], &c).map { $0.1 } == [1], "the other once entry 1 is durable")
        #expect(c.watchers.isEmpty)
    }

    @Test("a cancelled watcher is gone and is never fired; cancelling twice reports it fired or gone")
    func cancelledWatchersDoNotFire() {
        var c = core()
        guard case .waiting(let id) = c.watch(LedgerID(9), previous: -1, bringing: nil, fire: { _, _ in }) else {
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
        #expect(c.manifest.ledgers[6]?.hasKey(MasterKey(password: "new")) == true)
        var delete = [UInt8]()
        delete.appendBigEndian(UInt64(6))
        _ = durable([JournalRecord(kind: .delete, payload: delete)], &c)
        #expect(c.deletesPending.isEmpty)
        _ = durable([addRecord(6, 0)], &c)
        #expect(c.cache[LedgerID(6)]?.count == 1, "the new ledger's own records apply")
    }

    @Test("a checkpoint does not list a ledger deleted while its entry log was written, even when created anew since")
    func checkpointLeavesOutLedgersDeletedDuringIt() {
        var c = core()
        for l: UInt64 in [7, 8] { take(add(l), &c) }
        _ = durable([keyRecord(7), addRecord(7, 0), keyRecord(8), addRecord(8, 0)], &c)
        let freeze = c.checkpointStarted()
        take(.delete(LedgerID(7)), &c)
        take(add(7), &c)
        let written = EntryLogInfo(id: freeze.entryLogID, directory: 0, totalBytes: 4096, dataBytes: 200,
                                   ledgers: [7: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100),
                                             8: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 100)])
        _ = c.checkpointWritten(written, freeze)
        c.flushEnded()
        #expect(c.manifest.entryLogs.map { $0.ledgers.map(\.key) } == [[8]])
        #expect(c.deletedAt.isEmpty, "delete counts are kept only while a flush runs")
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
        #expect(c.manifest.ledgers[11] == nil && c.cache.isEmpty && c.cacheBytes == 0)
    }

    @Test("WRITE_LAC needs the ledger and its key, and answers long polls at once")
    func writeLACAnswersPolls() {
        var c = core()
        var firings = LedgerCore.Firings()
        #expect(c.writeLAC(LedgerID(12), key: testKey, lac: 3, &firings) == .noLedger)
        take(add(12), &c)
        #expect(c.writeLAC(LedgerID(12), key: MasterKey(password: "x"), lac: 3, &firings) == .keyMismatch)
        _ = c.watch(LedgerID(12), previous: 2, bringing: nil, fire: { _, _ in })
        #expect(c.writeLAC(LedgerID(12), key: testKey, lac: 3, &firings) == nil)
        #expect(firings.due.map { $0.lac } == [3])
    }
}
