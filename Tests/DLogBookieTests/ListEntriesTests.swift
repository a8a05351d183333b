import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogLedger
import DLogWire
import Foundation
import Testing

@Suite struct ListEntriesTests {
    /// What a bookie stores of a ledger, from the write cache and from entry logs, whole or with holes: the
    /// ranges are exact, start where asked, and page by `rangesMax` with `next` where the cut was made.
    @Test func storedEntriesAreListedExactly() throws {
        let dir = TempDir()
        let s = try LedgerStorage(configuration: .init(ledgerDirectories: [dir.sub("l0"), dir.sub("l1")]), journalCount: 1)
        // Entry log 1: ledger 1 whole (0…49); ledger 2 with holes, as a write set that skips this bookie leaves.
        let striped: [Int64] = (0..<60).filter { $0 % 5 != 1 && $0 % 5 != 3 }
        s.apply([keyRecord(1), keyRecord(2)] + (0..<50).map { addRecord(1, $0) } + striped.map { addRecord(2, $0) },
                journal: 0, through: nil)
        _ = try s.checkpoint()
        // The write cache: ledger 1 goes on (50…59, then 70 after a gap).
        s.apply((50..<60).map { addRecord(1, $0) } + [addRecord(1, 70)], journal: 0, through: nil)

        let one = try #require(try s.storedEntries(LedgerID(1), from: EntryID(0), rangesMax: 100))
        #expect(one.ranges == [EntryRange(EntryID(0), EntryID(59)), EntryRange(EntryID(70), EntryID(70))])
        #expect(one.next == nil)
        let later = try #require(try s.storedEntries(LedgerID(1), from: EntryID(55), rangesMax: 100))
        #expect(later.ranges == [EntryRange(EntryID(55), EntryID(59)), EntryRange(EntryID(70), EntryID(70))])

        let two = try #require(try s.storedEntries(LedgerID(2), from: EntryID(0), rangesMax: 1000))
        #expect(two.ranges == EntryRange.ranges(of: striped) && two.ranges.count == 25, "{0} {2} {4,5} {7} {9,10} … {57} {59}")
        let page = try #require(try s.storedEntries(LedgerID(2), from: EntryID(0), rangesMax: 5))
        #expect(page.ranges.count == 5 && page.next == two.ranges[5].first)
        #expect(try s.storedEntries(LedgerID(3), from: EntryID(0), rangesMax: 10) == nil, "not on this bookie")
    }

    /// Over the wire, through a real server and client: the client pages through the whole list, and a ledger
    /// the bookie does not hold is NO_LEDGER.
    @Test func aClientListsEveryPage() async throws {
        let dir = TempDir()
        let b = try TestBookie(dir)
        defer { b.stop() }
        let c = try await b.client()
        var expected: [Int64] = []
        for e in Int64(0)..<300 where e % 3 != 2 {
            let r = try await c.send(.add(masterKey: testKey, entry: entry(4, e), recovery: false))
            #expect(r == .added(ledger: LedgerID(4), entry: EntryID(e)))
            expected.append(e)
        }
        _ = try b.bookie.storage.checkpoint()
        let listed = try await c.storedEntries(of: LedgerID(4), rangesPerPage: 7)
        #expect(listed == EntryRange.ranges(of: expected) && listed.count == 100)
        await #expect(throws: BookieClient.Failure.self) { _ = try await c.storedEntries(of: LedgerID(99)) }
        await c.close()
    }
}
