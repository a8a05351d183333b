@testable import DLogBookie
import DLogTestSupport
import Foundation
import Testing

@Suite struct LedgerRangesTests {
    /// Random adds of entries (mostly in ledger order, as a checkpoint writes them, some out of it), sets and
    /// removals, enough to leave holes and rebuild without them many times, checked against a plain dictionary:
    /// the same ranges, the same count, ascending ids, the same live bytes, and `keeping` keeps what it says.
    @Test(arguments: 0 ..< 4) func behavesLikeADictionary(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var ranges = LedgerRanges()
        var model: [UInt64: EntryLogLedgerRange] = [:]
        var next: UInt64 = 1
        for step in 0 ..< 30_000 {
            let id = Int.random(in: 0..<4, using: &random) == 0 ? UInt64.random(in: 1...next, using: &random) : next
            if id == next && Bool.random(using: &random) { next += UInt64.random(in: 1...3, using: &random) }
            switch Int.random(in: 0..<8, using: &random) {
            case 0, 1:
                ranges[id] = nil
                model[id] = nil
            case 2:
                let range = EntryLogLedgerRange(first: Int64(step), last: Int64(step) + 5, count: 3, bytes: 300)
                ranges[id] = range
                model[id] = range
            default:
                let entry = Int64.random(in: 0...1_000, using: &random), bytes = Int.random(in: 1...500, using: &random)
                ranges.add(ledger: id, entry: entry, bytes: bytes)
                var range = model[id] ?? EntryLogLedgerRange(first: entry, last: entry, count: 0, bytes: 0)
                range.first = min(range.first, entry)
                range.last = max(range.last, entry)
                range.count += 1
                range.bytes += bytes
                model[id] = range
            }
            #expect(ranges[id] == model[id], "seed \(seed) step \(step): ledger \(id)")
            if step % 3_000 == 2_999 {
                #expect(ranges.count == model.count && ranges.isEmpty == model.isEmpty)
                #expect(ranges.map(\.key) == model.keys.sorted())
                #expect(ranges.allSatisfy { model[$0.key] == $0.value })
                #expect(ranges.bytes == model.values.reduce(0) { $0 + $1.bytes })
                let even = ranges.keeping { $0 % 2 == 0 }
                #expect(even == LedgerRanges(model.filter { $0.key % 2 == 0 }))
                #expect(ranges == LedgerRanges(model))
            }
        }
    }

    /// Ledgers as an index file lists them: sorted (this version), or in any order with a ledger twice (a
    /// dictionary's order, as earlier versions wrote them; the last range listed counts, as it did).
    /// The JSON manifest's ranges come from disk: an empty range lists nothing (a fuzzed `"count": -0` trapped),
    /// and an impossible one is an error naming its ledger.
    @Test func decodingDropsEmptyRangesAndRefusesImpossibleOnes() throws {
        // A dictionary keyed by UInt64 is a flat array of keys and values in JSON.
        let empty = #"[5,{"first":0,"last":3,"count":-0,"bytes":0},7,{"first":1,"last":2,"count":2,"bytes":9}]"#
        let ranges = try JSONDecoder().decode(LedgerRanges.self, from: Data(empty.utf8))
        #expect(ranges.map(\.key) == [7] && ranges.count == 1)
        for bad in [#"[5,{"first":0,"last":3,"count":-1,"bytes":0}]"#, #"[5,{"first":4,"last":3,"count":1,"bytes":0}]"#] {
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(LedgerRanges.self, from: Data(bad.utf8)) }
        }
    }

    @Test func readsListsInAnyOrder() {
        func range(_ n: Int) -> EntryLogLedgerRange { EntryLogLedgerRange(first: 0, last: Int64(n), count: n + 1, bytes: n) }
        let sorted = LedgerRanges(listed: [(1, range(1)), (5, range(5)), (9, range(9))])
        #expect(sorted.map(\.key) == [1, 5, 9] && sorted[5] == range(5))
        let unsorted = LedgerRanges(listed: [(9, range(9)), (1, range(1)), (5, range(2)), (5, range(5))])
        #expect(unsorted == sorted)
    }

    /// Removing leaves holes that lookups, counts and equality skip, and the arrays are rebuilt once holes
    /// outnumber live ledgers.
    @Test func holesAreSkippedAndRebuilt() {
        var ranges = LedgerRanges()
        for id in UInt64(0) ..< 1_000 { ranges.add(ledger: id, entry: 0, bytes: 10) }
        for id in UInt64(0) ..< 999 { ranges[id] = nil }
        #expect(ranges.count == 1 && ranges.map(\.key) == [999] && ranges.bytes == 10)
        #expect(ranges == [999: EntryLogLedgerRange(first: 0, last: 0, count: 1, bytes: 10)])
        ranges.add(ledger: 3, entry: 7, bytes: 5)
        #expect(ranges.map(\.key) == [3, 999] && ranges[3] == EntryLogLedgerRange(first: 7, last: 7, count: 1, bytes: 5))
    }
}
