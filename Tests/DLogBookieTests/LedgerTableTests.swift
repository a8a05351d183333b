@testable import DLogBookie
import DLogTestSupport
import Testing

@Suite struct LedgerTableTests {
    /// Tables of distinct ids merge into one in id order, equal to a table built from all of them, with
    /// nothing reported as changed (the merged table is written as a snapshot, not changed).
    @Test func mergingTablesKeepsEveryLedgerInOrder() {
        var random = SeededGenerator(seed: 9)
        var parts = Array(repeating: LedgerTable(), count: 5)
        var all: [UInt64: LedgerState] = [:]
        for id in UInt64(1)...20_000 {
            guard Bool.random(using: &random) else { continue }
            var state = LedgerState(masterKey: Array(repeating: UInt8(truncatingIfNeeded: id), count: 20))
            state.lastEntry = Int64(id)
            parts[Int.random(in: 0..<5, using: &random)][id] = state
            all[id] = state
        }
        var merged = LedgerTable(merging: parts)
        #expect(merged == LedgerTable(all))
        #expect(merged.sortedIDs == all.keys.sorted())
        let changed = merged.takeChanged()
        #expect(changed.isEmpty)
        #expect(LedgerTable(merging: [parts[0]]) == parts[0])
        #expect(LedgerTable(merging: []).isEmpty)
    }


    /// Random sets, updates in place, removals and restores, enough to fold the overlay into the base many times, checked after
    /// every step against a plain dictionary: the same states, the same count, ascending ids, and exactly the
    /// ids set or removed (not restored) reported as changed.
    @Test(arguments: 0 ..< 4) func behavesLikeADictionary(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var table = LedgerTable()
        var model: [UInt64: LedgerState] = [:]
        var changed = Set<UInt64>()
        var next: UInt64 = 1
        for step in 0 ..< 60_000 {
            // Mostly new ids, growing (as ledgers are created), some old ones changed or removed.
            let id = Int.random(in: 0..<3, using: &random) == 0 ? UInt64.random(in: 1...next, using: &random) : next
            if id == next { next += UInt64.random(in: 1...3, using: &random) }
            var state = LedgerState(masterKey: Array(repeating: UInt8(truncatingIfNeeded: id), count: 20))
            state.lastEntry = Int64(step)
            switch Int.random(in: 0..<12, using: &random) {
            case 0:
                table[id] = nil
                model[id] = nil
                changed.insert(id)
            case 1:
                table.restore(id, state)
                model[id] = state
            case 2:
                table[id, default: state].fenced = true
                model[id, default: state].fenced = true
                changed.insert(id)
            case 3:
                // In place, only a ledger that exists.
                let found: Void? = table.update(id) { $0.lastEntry += 1 }
                #expect((found != nil) == (model[id] != nil), "seed \(seed) step \(step): update of \(id)")
                if model[id] != nil {
                    model[id]!.lastEntry += 1
                    changed.insert(id)
                }
            case 4:
                table.update(id, orInsert: state) { $0.fenced = true }
                model[id, default: state].fenced = true
                changed.insert(id)
            default:
                table[id] = state
                model[id] = state
                changed.insert(id)
            }
            #expect(table[id] == model[id], "seed \(seed) step \(step): ledger \(id)")
            if step % 5_000 == 4_999 || step == 59_999 {
                #expect(table.count == model.count)
                var ids: [UInt64] = []
                table.forEach { id, state in
                    ids.append(id)
                    if model[id] != state { Issue.record("seed \(seed) step \(step): \(id) differs") }
                }
                #expect(ids == model.keys.sorted(), "seed \(seed) step \(step): ids")
                #expect(table.sortedIDs == ids)
                #expect(table.takeChanged() == changed)
                changed = []
                #expect(table == LedgerTable(model))
            }
        }
    }
}
