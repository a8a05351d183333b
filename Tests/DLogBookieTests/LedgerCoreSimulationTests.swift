@testable import DLogBookie
import DLogSimulation
import DLogWire
import Testing

/// The ledger state alone (the shards' cores, their driver and the entry-log catalog), driven by seeded random
/// events in orders the threaded bookie reaches only by chance: adds, fences and deletes taken while earlier
/// records are still on their way to durability, checkpoints that start, fail or publish while ledgers are
/// deleted and made anew. After every event the state is compared with a model of what the bookie promised. No
/// disk, no journal, no thread: thousands of events a seed, with 1, 2, 4 or 8 shards.
@Suite struct LedgerCoreSimulationTests {
    /// What the core must agree with. A ledger id is reused after a delete, with a new generation; entry bytes
    /// carry their generation (in their size), so an entry of a deleted ledger read as its successor's is caught.
    private struct Model {
        var generation: [UInt64: Int] = [:]
        var exists: Set<UInt64> = []
        var fenced: Set<UInt64> = []
        var nextEntry: [UInt64: Int64] = [:]
        /// Durable entries of each ledger's current generation, with their bytes.
        var stored: [UInt64: [Int64: [UInt8]]] = [:]
        /// Records taken and not yet durable, in journal order, with the generation they were taken in.
        var queued: [(JournalRecord, UInt64, Int)] = []
        /// What each entry log written by a checkpoint holds.
        var files: [UInt64: [LedgerID: [Int64: [UInt8]]]] = [:]
    }

    @Test("random events keep the core's promises", arguments: 0 ..< 24)
    func randomEventsKeepThePromises(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed &+ 0x51ED)
        let core = LedgerShards(manifest: Manifest(), shardCount: 1 << Int(seed % 4), cacheBytesMax: 64 << 10)
        var model = Model()
        var freeze: LedgerShards.Freeze? = nil
        var log: [String] = []
        for step in 0 ..< 3000 {
            let l = UInt64.random(in: 1 ... 6, using: &random)
            let key = MasterKey(password: "\(l)-\(model.generation[l, default: 0])")
            switch Int.random(in: 0 ..< 100, using: &random) {
            case 0 ..< 40:
                let e = model.nextEntry[l, default: 0]
                let bytes = entry(l, e, size: 8 + model.generation[l, default: 0])
                let request = LedgerCore.Request.add(LedgerID(l), key: key, piggybackedLAC: e - 1, recovery: false)
                log.append("add \(l)/\(e)")
                var withKey = false
                guard case .success = core.take(request, journal: { withKey = $0; return nil }) else { continue }
                #expect(!model.fenced.contains(l), "seed \(seed) step \(step): an add on fenced \(l) was taken")
                let g = model.generation[l, default: 0]
                if withKey { model.queued.append((keyRecord(l), l, g)) }
                model.queued.append((JournalRecord(kind: .add, payload: bytes), l, g))
                model.exists.insert(l)
                model.nextEntry[l] = e + 1
            case 40 ..< 48:
                log.append("fence \(l)")
                guard case .success = core.take(.fence(LedgerID(l), key: key), journal: { _ in nil }) else { continue }
                model.exists.insert(l)
                model.fenced.insert(l)
            case 48 ..< 54:
                log.append("delete \(l)")
                let taken = core.take(.delete(LedgerID(l)), journal: { _ in nil })
                #expect((taken.refusal == .core(.noLedger)) == !model.exists.contains(l), "seed \(seed) step \(step)")
                guard case .success = taken else { continue }
                var payload = [UInt8]()
                payload.appendBigEndian(l)
                model.queued.append((JournalRecord(kind: .delete, payload: payload), l, model.generation[l, default: 0]))
                model.generation[l, default: 0] += 1
                model.exists.remove(l)
                model.fenced.remove(l)
                model.stored[l] = nil
                model.nextEntry[l] = 0
            case 54 ..< 85:
                let count = Int.random(in: 0 ... min(8, model.queued.count), using: &random)
                log.append("durable \(count)")
                let batch = model.queued.prefix(count)
                model.queued.removeFirst(count)
                core.durable(batch.map(\.0), journal: 0, through: nil)
                for (record, ledger, g) in batch where record.kind == .add && g == model.generation[ledger, default: 0] {
                    let header = try #require(EntryCodec.header(of: record.payload))
                    model.stored[ledger, default: [:]][header.entry.rawValue] = record.payload
                }
            case 85 ..< 93 where freeze == nil:
                log.append("checkpoint starts")
                freeze = core.checkpointStarted()
            case 85 ..< 93:
                let frozen = freeze!
                freeze = nil
                if Bool.random(using: &random) {
                    log.append("checkpoint fails")
                    core.checkpointFailed(frozen)
                } else {
                    log.append("checkpoint writes")
                    let info = write(frozen, &model)
                    _ = core.withEveryShard { core.checkpointWritten(info, frozen, $0) }
                }
                core.flushEnded()
            default:
                log.append("nothing")
            }
            do {
                try check(core, model, "seed \(seed) step \(step) after \(log.suffix(6))")
            } catch {
                Issue.record("\(error)")
                return
            }
        }
    }

    /// The entry log a checkpoint of `freeze` writes: the live ledgers' frozen entries.
    private func write(_ freeze: LedgerShards.Freeze, _ model: inout Model) -> EntryLogInfo? {
        var ranges: [UInt64: EntryLogLedgerRange] = [:]
        var content: [LedgerID: [Int64: [UInt8]]] = [:]
        var previous: UInt64? = nil
        // What the checkpoint writes: what `Freeze.forEachEntry` visits.
        // The visitor here throws nothing, so neither does the visit.
        try! freeze.forEachEntry { ledger, entry, bytes in
            let e = entry.rawValue
            precondition(previous.map { $0 <= ledger.rawValue } ?? true, "entries come in ledger order")
            previous = ledger.rawValue
            let range = ranges[ledger.rawValue] ?? EntryLogLedgerRange(first: .max, last: .min, count: 0, bytes: 0)
            ranges[ledger.rawValue] = EntryLogLedgerRange(first: min(range.first, e), last: max(range.last, e),
                                                          count: range.count + 1, bytes: range.bytes + bytes.count)
            content[ledger, default: [:]][e] = Array(bytes)
        }
        guard !ranges.isEmpty else { return nil }
        model.files[freeze.entryLogID] = content
        let data = ranges.values.reduce(0) { $0 + $1.bytes }
        return EntryLogInfo(id: freeze.entryLogID, directory: 0, totalBytes: data + 4096, dataBytes: data,
                            ledgers: LedgerRanges(ranges))
    }

    /// Reads as the storage does: the cache, the cache being flushed, then the entry logs listing the entry,
    /// newest first.
    private func read(_ core: LedgerShards, _ model: Model, _ l: UInt64, _ e: Int64) -> [UInt8]? {
        let ledger = LedgerID(l)
        if let bytes = core.withShard(l, { $0.cache[ledger]?[e] ?? $0.flushing?[ledger]?[e] }) { return bytes }
        for info in core.catalog.withLock({ $0.manifest.entryLogs }).reversed() {
            guard let range = info.ledgers[l], e >= range.first, e <= range.last else { continue }
            if let bytes = model.files[info.id]?[ledger]?[e] { return bytes }
        }
        return nil
    }

    private struct Broken: Error, CustomStringConvertible {
        var description: String
    }

    /// Throws the first promise the core broke: a seed stops at its first failure, named by step.
    private func check(_ core: LedgerShards, _ model: Model, _ at: String) throws {
        func require(_ ok: Bool, _ what: @autoclosure () -> String) throws {
            if !ok { throw Broken(description: "\(at): \(what())") }
        }
        for l in UInt64(1) ... 6 {
            let state = core.withShard(l) { $0.ledgers[l] }
            try require((state != nil) == model.exists.contains(l), "ledger \(l) exists: \(state != nil)")
            try require((state?.fenced ?? false) == model.fenced.contains(l), "ledger \(l) fenced: \(state?.fenced ?? false)")
            for (e, bytes) in model.stored[l] ?? [:] {
                try require(read(core, model, l, e) == bytes, "durable \(l)/\(e) does not read back")
            }
            // Nothing of an earlier generation, nor anything not durable, reads as this one's.
            for e in 0 ..< model.nextEntry[l, default: 0] + 3 where model.stored[l]?[e] == nil {
                try require(read(core, model, l, e) == nil, "\(l)/\(e) reads bytes never durable in this generation")
            }
        }
        var (cacheTotal, flushingTotal) = (0, 0)
        for (s, shard) in core.shards.enumerated() {
            let c = shard.state.withLock { $0 }
            try require(c.cacheBytes == c.cache.values.reduce(0) { $0 + $1.bytes }, "shard \(s)'s cache bytes")
            try require(c.flushingBytes == (c.flushing?.values.reduce(0) { $0 + $1.bytes } ?? 0), "shard \(s)'s flushing bytes")
            for ledger in c.cache.keys {
                try require(c.ledgers[ledger.rawValue] != nil, "the cache holds deleted \(ledger)")
                try require(LedgerShards.index(ledger.rawValue, of: core.shards.count) == s, "\(ledger) is in shard \(s)")
            }
            cacheTotal += c.cacheBytes
            flushingTotal += c.flushingBytes
        }
        try require(core.sizes.cache.load(ordering: .relaxed) == cacheTotal, "the cache's size, all shards together")
        try require(core.sizes.flushing.load(ordering: .relaxed) == flushingTotal, "the flushing cache's size, all shards together")
        for info in core.catalog.withLock({ $0.manifest.entryLogs }) {
            for (l, _) in info.ledgers {
                try require(core.exists(l), "entry log \(info.id) lists deleted ledger \(l)")
            }
        }
    }
}
