import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogLedger
import DLogWire
import Foundation
import NIOCore
import Synchronization
import Testing

/// A delete taken while records of the same ledger are still on their way through the journal. The journal
/// applies records in the order they were taken, so every record ahead of a delete belongs to the ledger the
/// delete removed, never to one created anew after it.
@Suite struct DeleteInFlightTests {
    /// The defect: an add that created a ledger, and a delete of it taken before the add was durable, left the
    /// ledger in place once both were: applying the add's key record found no ledger (the delete had dropped it)
    /// and created it again, and nothing removed it after.
    @Test func aLedgerDeletedBeforeItsFirstAddIsDurableStaysDeleted() async throws {
        let dir = TempDir()
        let gate = Gate()
        var b = try TestBookie(dir) {
            $0.journal.makeEngine = { InterceptingEngine("gated") { _ in gate.passWhenOpen() } }
            $0.checkpointInterval = .seconds(3600)
        }
        var c = try await b.client()
        try await c.add(key: testKey, entry: entry(40, 0))  // the journal is open and idle before the gate shuts
        gate.shut()
        let added = c.sendFuture(.add(masterKey: testKey, entry: entry(31, 0), recovery: false))
        let deleted = c.sendFuture(.deleteLedger(ledger: LedgerID(31)))
        try await waitUntil { b.bookie.storage.ledgerState(LedgerID(31)) == nil }
        gate.open()
        #expect(try await added.get() == .added(ledger: LedgerID(31), entry: EntryID(0)))
        #expect(try await deleted.get() == .done)
        #expect(b.bookie.storage.ledgerState(LedgerID(31)) == nil, "the deleted ledger came back")
        #expect(await failure { _ = try await c.read(ledger: LedgerID(31), entry: EntryID(0)) } == .noLedger)
        _ = try b.bookie.storage.checkpoint()
        await c.close()
        b.stop()
        b = try TestBookie(dir)
        defer { b.stop() }
        c = try await b.client()
        #expect(await failure { _ = try await c.read(ledger: LedgerID(31), entry: EntryID(0)) } == .noLedger)
        await c.close()
    }

    /// The defect: a ledger deleted and created anew under the same id, before the delete was durable, showed
    /// the deleted ledger's entries (from the write cache and from entry logs) as its own, and took the last
    /// entry and the LAC of an add journaled before the delete. It now holds only what was added after.
    @Test func aLedgerCreatedAnewHoldsNothingOfTheDeletedOne() async throws {
        let dir = TempDir()
        let gate = Gate()
        let newKey = MasterKey(password: "another")
        var b = try TestBookie(dir) {
            $0.journal.makeEngine = { InterceptingEngine("gated") { _ in gate.passWhenOpen() } }
            $0.checkpointInterval = .seconds(3600)
        }
        var c = try await b.client()
        // Entries 0...2 in an entry log, 3 and 4 in the write cache.
        for e in 0..<3 { try await c.add(key: testKey, entry: entry(32, Int64(e))) }
        _ = try b.bookie.storage.checkpoint()
        for e in 3..<5 { try await c.add(key: testKey, entry: entry(32, Int64(e))) }

        gate.shut()
        let lateAdd = c.sendFuture(.add(masterKey: testKey, entry: entry(32, 5, lac: 4), recovery: false))
        let deleted = c.sendFuture(.deleteLedger(ledger: LedgerID(32)))
        try await waitUntil { b.bookie.storage.ledgerState(LedgerID(32)) == nil }
        let anew = c.sendFuture(.add(masterKey: newKey, entry: entry(32, 0), recovery: false))
        try await waitUntil { b.bookie.storage.ledgerState(LedgerID(32)) != nil }
        // Before anything is durable: the new ledger has no entry 1 (entry log) nor 3 (write cache).
        #expect(await failure { _ = try await c.read(ledger: LedgerID(32), entry: EntryID(1)) } == .noEntry)
        #expect(await failure { _ = try await c.read(ledger: LedgerID(32), entry: EntryID(3)) } == .noEntry)
        gate.open()
        #expect(try await lateAdd.get() == .added(ledger: LedgerID(32), entry: EntryID(5)))
        #expect(try await deleted.get() == .done)
        #expect(try await anew.get() == .added(ledger: LedgerID(32), entry: EntryID(0)))

        func expectOnlyTheNewLedger(_ b: TestBookie, _ c: BookieClient, _ when: String) async throws {
            let state = try #require(b.bookie.storage.ledgerState(LedgerID(32)))
            #expect(state.lastEntry == 0 && state.lac == -1, "\(when): last entry \(state.lastEntry), LAC \(state.lac)")
            #expect(state.masterKey == newKey.bytes, "\(when): the deleted ledger's key")
            #expect(try await c.read(ledger: LedgerID(32), entry: EntryID(-1)) == entry(32, 0), "\(when)")
            for e: Int64 in [1, 3, 5] {
                #expect(await failure { _ = try await c.read(ledger: LedgerID(32), entry: EntryID(e)) } == .noEntry,
                        "\(when): entry \(e) of the deleted ledger")
            }
        }
        try await expectOnlyTheNewLedger(b, c, "live")
        _ = try b.bookie.storage.checkpoint()
        try await expectOnlyTheNewLedger(b, c, "after a checkpoint")
        await c.close()
        b.stop()
        b = try TestBookie(dir)
        defer { b.stop() }
        c = try await b.client()
        try await expectOnlyTheNewLedger(b, c, "after a restart")
        await c.close()
    }

    /// The defect: a ledger deleted and created anew while a checkpoint wrote its old entries to an entry log was
    /// listed in that file when the checkpoint published it, so the new ledger read the deleted one's entries.
    @Test func aCheckpointDoesNotListADeletedLedgerCreatedAnewMeanwhile() throws {
        let dir = TempDir()
        let disk = HeldDisk(holding: "entrylog-")
        var config = LedgerStorage.Configuration(ledgerDirectories: [dir.sub("l0")])
        config.disk = disk
        let s = try LedgerStorage(configuration: config, journalCount: 1)
        s.apply([keyRecord(33)] + (0..<3).map { addRecord(33, Int64($0)) }, journal: 0, through: nil)
        let checkpointed = DispatchSemaphore(value: 0)
        let outcome = Mutex<(any Error)?>(nil)
        Thread.detachNewThread {
            do { _ = try s.checkpoint() } catch { outcome.withLock { $0 = error } }
            checkpointed.signal()
        }
        disk.waitUntilHeld()
        #expect(throws: Never.self) { try s.take(.delete(LedgerID(33))) { _ in nil }.get() }
        let another = MasterKey(password: "another")
        #expect(throws: Never.self) {
            try s.take(.add(LedgerID(33), key: another, piggybackedLAC: -1, recovery: false)) { _ in nil }.get()
        }
        disk.release()
        checkpointed.wait()
        #expect(outcome.withLock { $0 } == nil)
        for e: Int64 in 0..<3 { #expect(try read(s, 33, e) == nil, "entry \(e) of the deleted ledger") }
    }

    private func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TimedOut(what: "the bookie to take the request", seconds: 10) }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}


/// The real disk, except that opening a file whose path contains `holding` waits, the first time, until
/// `release`: a checkpoint or compaction held in the middle, at the point it starts writing its file.
final class HeldDisk: Disk {
    private let inner = PosixDisk()
    private let holding: String
    private let held = DispatchSemaphore(value: 0)
    private let released = DispatchSemaphore(value: 0)
    private let armed = Atomic(true)

    init(holding: String) { self.holding = holding }

    func waitUntilHeld() { held.wait() }
    func release() { released.signal() }

    func open(_ path: String, _ options: File.Options) throws(SystemError) -> any DiskFile {
        if path.contains(holding), armed.exchange(false, ordering: .relaxed) {
            held.signal()
            released.wait()
        }
        return try inner.open(path, options)
    }
    func makeDirectory(_ path: String) throws(SystemError) { try inner.makeDirectory(path) }
    func syncDirectory(_ path: String) throws(SystemError) { try inner.syncDirectory(path) }
    func rename(_ from: String, _ to: String) throws(SystemError) { try inner.rename(from, to) }
    func link(_ existing: String, _ new: String) throws(SystemError) { try inner.link(existing, new) }
    func remove(_ path: String) throws(SystemError) { try inner.remove(path) }
    func exists(_ path: String) -> Bool { inner.exists(path) }
    func list(_ directory: String) throws(SystemError) -> [String] { try inner.list(directory) }
    func usage(of path: String) throws(SystemError) -> FileSystem.Usage { try inner.usage(of: path) }
}
