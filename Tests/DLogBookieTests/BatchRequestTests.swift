import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogLedger
import DLogWire
import Foundation
import Testing

/// READ_RANGE and ADD_BATCH (docs/protocol.md) through a real server and client.
@Suite struct BatchRequestTests {
    /// READ_RANGE answers, from entry logs and the write cache alike, exactly the entries the bookie holds intact:
    /// one it lacks or holds damaged is left out (and the rest still come), answers page at `maxBytes` with
    /// `next` (one entry goes alone when it is larger), and a ledger it does not hold is NO_LEDGER.
    @Test func readRangeAnswersWhatIsHeldIntact() async throws {
        let dir = TempDir()
        // Entry log: entries 0…39 of ledger 1 but every fourth (a write set that skips this bookie); entry 0 damaged.
        let logged = (Int64(0)..<40).filter { $0 % 4 != 3 }
        do {
            let b = try TestBookie(dir)
            b.bookie.storage.apply([keyRecord(1)] + logged.map { addRecord(1, $0, size: 200) }, journal: 0, through: nil)
            _ = try b.bookie.storage.checkpoint()
            b.stop()
        }
        let path = dir.sub("ledgers") + "/entrylog-1.log"
        var bytes = try FileSystem.readAll(path)
        bytes[4096 + 8 + EntryHeader.byteCount + 5] ^= 0x10  // entry 0's payload
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        // The write cache: 40…49.
        for e in Int64(40)..<50 { try await c.add(key: testKey, entry: entry(1, e, size: 200)) }
        let expected = (logged.dropFirst() + Array(40..<50)).map { entry(1, $0, size: 200) }

        var got: [[UInt8]] = []
        var from: Int64 = 0
        var answers = 0
        while true {
            let answer = try await c.send(.readRange(ledger: LedgerID(1), first: EntryID(from), last: EntryID(49), maxBytes: 1000))
            guard case .entryBatch(let entries, let next) = answer else {
                Issue.record("READ_RANGE answered \(answer)")
                return
            }
            #expect(entries.reduce(0) { $0 + $1.count } <= 1000 && !entries.isEmpty)
            got += entries
            answers += 1
            guard let next else { break }
            #expect(next.rawValue > from)
            from = next.rawValue
        }
        #expect(got == expected, "every intact entry held, ascending; not the damaged entry 0, nor 3, 7, …")
        #expect(answers == (expected.count + 3) / 4, "four 236-byte entries fit in 1,000 bytes")

        let one = try await c.send(.readRange(ledger: LedgerID(1), first: EntryID(41), last: EntryID(49), maxBytes: 10))
        #expect(one == .entryBatch(entries: [entry(1, 41, size: 200)], next: EntryID(42)), "one entry goes alone")
        let past = try await c.send(.readRange(ledger: LedgerID(1), first: EntryID(50), last: EntryID(90), maxBytes: 1 << 20))
        #expect(past == .entryBatch(entries: [], next: nil))
        let gap = try await c.send(.readRange(ledger: LedgerID(1), first: EntryID(3), last: EntryID(3), maxBytes: 1 << 20))
        #expect(gap == .entryBatch(entries: [], next: nil))
        guard case .failed(.noLedger, _) = try await c.send(.readRange(ledger: LedgerID(2), first: EntryID(0), last: EntryID(9),
                                                                       maxBytes: 1 << 20)) else {
            Issue.record("a ledger the bookie does not hold is not NO_LEDGER")
            return
        }
        await c.close()
    }

    /// READ_RANGE reads entries that an entry log holds back to back (a checkpoint writes each ledger so) with one
    /// read of the disk for the run, where a READ of each makes two (its index block, then its bytes): the copies
    /// of a replication worker are such runs.
    @Test func readRangeReadsARunOfStoredEntriesAtOnce() throws {
        let dir = TempDir()
        let disk = SimulatedDisk()
        let b = try TestBookie(dir) { $0.place(on: disk) }
        defer { b.stop() }
        b.bookie.storage.apply([keyRecord(2)] + (Int64(0)..<64).map { addRecord(2, $0, size: 4000) }, journal: 0, through: nil)
        _ = try b.bookie.storage.checkpoint()
        let before = disk.calls(.read)
        let answer = b.bookie.readRange(ledger: LedgerID(2), first: EntryID(0), last: EntryID(63), maxBytes: 1 << 20)
        let reads = disk.calls(.read) - before
        #expect(answer == .entryBatch(entries: (Int64(0)..<64).map { entry(2, $0, size: 4000) }, next: nil))
        // Opening the file reads its header, footer, summary and index (4); the run, its first index block, its
        // rows and its bytes (3). One read per entry would be 64 more.
        #expect(reads <= 8, "\(reads) reads of the disk for 64 entries stored back to back")

        // A budget ends the run where it ends the answer, and the rest comes in the next.
        let first = b.bookie.readRange(ledger: LedgerID(2), first: EntryID(10), last: EntryID(63), maxBytes: 10_000)
        #expect(first == .entryBatch(entries: (Int64(10)..<12).map { entry(2, $0, size: 4000) }, next: EntryID(12)))
    }

    /// ADD_BATCH stores every entry (each readable after the one answer) and counts them; it is checked as ADD is:
    /// a normal batch on a fenced ledger is refused naming the entry, a recovery batch is accepted there, and a
    /// batch with a wrong key is UNAUTHORIZED.
    @Test func addBatchAddsEveryEntryWithAddsChecks() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        let first = (Int64(0)..<20).map { entry(6, $0, size: 100) }
        #expect(try await c.send(.addBatch(masterKey: testKey, entries: first, recovery: false)) == .addedBatch(count: 20))
        for e in Int64(0)..<20 { #expect(try await c.read(ledger: LedgerID(6), entry: EntryID(e)) == first[Int(e)]) }

        _ = try await c.read(ledger: LedgerID(6), entry: .none, fenceWith: testKey)
        let more = (Int64(20)..<24).map { entry(6, $0, size: 100) }
        guard case .failed(.fenced, let message) = try await c.send(.addBatch(masterKey: testKey, entries: more, recovery: false)) else {
            Issue.record("a normal batch was accepted on a fenced ledger")
            return
        }
        #expect(message.hasPrefix("entry 0 of the batch: "))
        #expect(try await c.send(.addBatch(masterKey: testKey, entries: more, recovery: true)) == .addedBatch(count: 4))
        #expect(try await c.read(ledger: LedgerID(6), entry: EntryID(23)) == more[3])

        guard case .failed(.unauthorized, _) = try await c.send(.addBatch(masterKey: MasterKey(password: "other"),
                                                                          entries: more, recovery: true)) else {
            Issue.record("a batch with another key was not refused")
            return
        }
        await c.close()
    }
}
