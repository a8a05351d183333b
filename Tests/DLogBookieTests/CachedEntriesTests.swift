@testable import DLogBookie
import DLogTestSupport
import Testing

@Suite struct CachedEntriesTests {
    /// Against a dictionary: entries in any order (mostly ascending, as adds come), replacements, lookups.
    @Test func keepsEntriesInOrderLikeADictionary() {
        var random = SeededGenerator(seed: 7)
        var cache = CachedEntries()
        var model: [Int64: [UInt8]] = [:]
        var next: Int64 = 0
        for step in 0 ..< 5_000 {
            let entry = Int.random(in: 0 ..< 4, using: &random) == 0 ? Int64.random(in: 0 ... next + 5, using: &random) : next
            if entry == next { next += 1 }
            let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: step), count: Int.random(in: 1 ... 40, using: &random))
            #expect(cache.set(entry, payload) == model[entry], "step \(step): the replaced payload")
            model[entry] = payload
            #expect(cache[entry] == payload)
        }
        #expect(cache.ids == model.keys.sorted())
        #expect(cache.count == model.count)
        #expect(cache.bytes == model.values.reduce(0) { $0 + $1.count })
        var seen: [Int64] = []
        cache.forEach { id, payload in
            seen.append(id)
            #expect(model[id] == payload)
        }
        #expect(seen == model.keys.sorted())
        #expect(cache[next + 10] == nil)
    }
}
