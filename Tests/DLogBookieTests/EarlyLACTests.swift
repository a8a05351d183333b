import DLogTestSupport
@testable import DLogBookie
import DLogLedger
import DLogWire
import Foundation
import NIOCore
import Synchronization
import Testing

/// Open or shut, from any thread; a journal whose engine passes it stalls its syncs while it is shut.
final class Gate: Sendable {
    private let isOpen = Atomic(true)
    func shut() { isOpen.store(false, ordering: .releasing) }
    func open() { isOpen.store(true, ordering: .releasing) }
    func passWhenOpen() {
        while !isOpen.load(ordering: .acquiring) { usleep(1_000) }
    }
}

/// Counts answers, whichever thread they arrive on.
final class Answers: Sendable {
    let count = Atomic(0)
}

@Suite struct EarlyLACTests {
    /// Proves a writer's LAC wakes the ledger's long polls as soon as the bookie takes the request that brings
    /// it, not once a journal record is durable: the LAC is the writer's word about entries already durable on an
    /// ack quorum, so a tailing reader need not wait for this bookie's sync. WRITE_LAC is answered at once (it is
    /// not journaled); an add's LAC wakes polls at once while the add's answer waits for its sync. A poll that asks
    /// for the next entry is answered at once too, with the LAC alone while that entry is not stored here (the
    /// reader reads it from a bookie that has it), and with the entry once it is.
    @Test func aLACWakesLongPollsBeforeItsRecordIsDurable() async throws {
        let dir = TempDir()
        let gate = Gate()
        // No checkpoint during the test: entries stay in memory, where a poll takes the next one from.
        let b = try TestBookie(dir) {
            $0.journal.makeEngine = { InterceptingEngine("gated") { _ in gate.passWhenOpen() } }
            $0.checkpointInterval = .seconds(3600)
        }
        defer {
            // Stopping joins the journal thread: it must not be held at the gate.
            gate.open()
            b.stop()
        }
        let c = try await b.client()
        func poll(after previous: Int64, withEntry: Bool = false) -> EventLoopFuture<BookieResponse> {
            c.sendFuture(.readLAC(ledger: LedgerID(9), longPoll: .init(previous: EntryID(previous), timeoutMilliseconds: 20_000,
                                                                       withEntry: withEntry)))
        }
        try await c.add(key: testKey, entry: entry(9, 0))
        try await c.add(key: testKey, entry: entry(9, 1))  // carries LAC 0

        gate.shut()
        let explicitPoll = poll(after: 0)
        let written = c.sendFuture(.writeLAC(ledger: LedgerID(9), masterKey: testKey, lac: EntryID(1)))
        // Bounded well below the poll's own timeout: with the sync stalled, only the request itself can answer.
        let explicitAnswer = try await withTimeout(15, "long poll woken by WRITE_LAC with the journal stalled") {
            try await explicitPoll.get()
        }
        #expect(explicitAnswer == .lac(lac: EntryID(1), lastEntry: EntryID(1)))
        #expect(try await withTimeout(15, "WRITE_LAC answered with the journal stalled") { try await written.get() } == .done)

        // The same for the LAC an add carries; the add's entry itself is not counted until it is durable.
        let entryPoll = poll(after: 1, withEntry: true)
        let addPoll = poll(after: 1)
        let added = [c.sendFuture(.add(masterKey: testKey, entry: entry(9, 2), recovery: false)),
                     c.sendFuture(.add(masterKey: testKey, entry: entry(9, 3, lac: 2), recovery: false))]
        let addAnswer = try await withTimeout(15, "long poll woken by an add's LAC with the journal stalled") {
            try await addPoll.get()
        }
        #expect(addAnswer == .lac(lac: EntryID(2), lastEntry: EntryID(1)))
        // Entry 2 is not stored here: the poll that asked for it is not held until this bookie's sync.
        let entryAnswer = try await withTimeout(15, "long poll for the next entry woken with the journal stalled") {
            try await entryPoll.get()
        }
        #expect(entryAnswer == .lac(lac: EntryID(2), lastEntry: EntryID(1)))
        let answered = Answers()
        for request in added { request.whenComplete { _ in answered.count.add(1, ordering: .relaxed) } }
        try await Task.sleep(for: .milliseconds(100))
        #expect(answered.count.load(ordering: .relaxed) == 0, "an add was answered before it was durable")

        gate.open()
        #expect(try await added[0].get() == .added(ledger: LedgerID(9), entry: EntryID(2)))
        #expect(try await added[1].get() == .added(ledger: LedgerID(9), entry: EntryID(3)))
        // Stored now: the same poll brings it.
        #expect(try await poll(after: 1, withEntry: true).get() == .lacAndEntry(lac: EntryID(2), lastEntry: EntryID(3), entry: entry(9, 2)))
        #expect(try await c.send(.readLAC(ledger: LedgerID(9), longPoll: nil)) == .lac(lac: EntryID(2), lastEntry: EntryID(3)))
        await c.close()
    }

    /// Proves an explicit LAC, never journaled, outlives a restart through the checkpoint a clean stop writes.
    @Test func anExplicitLACIsKeptByTheCheckpoint() async throws {
        let dir = TempDir()
        var b = try TestBookie(dir)
        var c = try await b.client()
        try await c.add(key: testKey, entry: entry(9, 0))
        try await c.add(key: testKey, entry: entry(9, 1))
        #expect(try await c.send(.writeLAC(ledger: LedgerID(9), masterKey: testKey, lac: EntryID(1))) == .done)
        await c.close()
        b.stop()

        b = try TestBookie(dir)
        defer { b.stop() }
        c = try await b.client()
        #expect(try await c.send(.readLAC(ledger: LedgerID(9), longPoll: nil)) == .lac(lac: EntryID(1), lastEntry: EntryID(1)))
        await c.close()
    }
}
