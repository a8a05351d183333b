@testable import DLogBookie
import DLogIO
import DLogTestSupport
import DLogWire
import Logging
import Testing

/// A bookie whose journal and ledger storage live on a `SimulatedDisk`, so a test can cut the power: what was
/// never synced is dropped or torn, which a SIGKILL (the page cache survives it) never does.
@Suite struct PowerLossTests {
    private static func add(_ b: Bookie, _ ledger: UInt64, _ e: Int64, size: Int) async -> BookieResponse {
        await withCheckedContinuation { done in
            b.add(masterKey: testKey, entry: entry(ledger, e, size: size), recovery: false) { done.resume(returning: $0) }
        }
    }

    /// The simulation's bookie, but with the threads a daemon's bookie has: its journal writer and background work.
    /// Even seeds shard the ledger state in four, so its locks meet real concurrency too.
    private func threaded(_ disk: SimulatedDisk, seed: UInt64) -> Bookie.Configuration {
        var c = BookieSimulation.configuration(disk, shards: seed % 2 == 0 ? 4 : 1)
        c.journal.writerThread = true
        c.backgroundThreads = true
        return c
    }

    /// Acknowledged adds survive a power cut at a seeded point among adds and checkpoints: whatever was not
    /// synced is dropped or torn at 512-byte sectors, and after restart every acknowledged entry reads back
    /// byte-exact. Adds still in flight at the cut may be lost; they were never acknowledged.
    @Test(arguments: UInt64(1)...6) func acknowledgedAddsSurviveAPowerCut(_ seed: UInt64) async throws {
        var random = SeededGenerator(seed: seed)
        let disk = SimulatedDisk()
        let logger = Logger(label: "power-loss")
        let first = try Bookie(configuration: threaded(disk, seed: seed), logger: logger)
        try first.start { _ in }
        var next: [UInt64: Int64] = [:]
        var acknowledged: [(UInt64, Int64, Int)] = []
        for _ in 0 ..< Int.random(in: 2...6, using: &random) {
            var round: [(UInt64, Int64, Int)] = []
            for _ in 0 ..< Int.random(in: 5...40, using: &random) {
                let ledger = UInt64.random(in: 1...5, using: &random)
                let e = next[ledger, default: 0]
                next[ledger] = e + 1
                round.append((ledger, e, Int.random(in: 1...3000, using: &random)))
            }
            // Sent together, so the journal groups them; each one's answer is awaited.
            let answers = await withTaskGroup(of: (Int, BookieResponse).self) { group in
                for (i, (ledger, e, size)) in round.enumerated() {
                    group.addTask { (i, await Self.add(first, ledger, e, size: size)) }
                }
                return await group.reduce(into: [Int: BookieResponse]()) { $0[$1.0] = $1.1 }
            }
            for (i, add) in round.enumerated() {
                guard case .added = answers[i] else { Issue.record("seed \(seed): add \(add) refused: \(answers[i]!)"); continue }
                acknowledged.append(add)
            }
            if Bool.random(using: &random) { #expect(first.runCheckpoint() == nil, "seed \(seed)") }
        }
        // The cut: a few more changes reach the disk, then nothing does; adds in flight meanwhile may fail.
        let inFlight = (0 ..< 10).map { i -> (UInt64, Int64, Int) in
            let ledger = UInt64(1 + i % 5)
            defer { next[ledger, default: 0] += 1 }
            return (ledger, next[ledger, default: 0], 500)
        }
        disk.haltAfter(changes: Int.random(in: 0...8, using: &random))
        acknowledged += await withTaskGroup(of: (UInt64, Int64, Int)?.self) { group in
            for add in inFlight {
                group.addTask {
                    guard case .added = await Self.add(first, add.0, add.1, size: add.2) else { return nil }
                    return add
                }
            }
            return await group.reduce(into: []) { if let add = $1 { $0.append(add) } }
        }
        first.stop()
        disk.crash(seed: seed, keep: .randomSectors)

        let second = try Bookie(configuration: threaded(disk, seed: seed), logger: logger)
        try second.start { _ in }
        defer { second.stop() }
        for (ledger, e, size) in acknowledged {
            let read = second.readEntryBlocking(ledger: LedgerID(ledger), entry: EntryID(e))
            guard case .entry(let bytes) = read else {
                Issue.record("seed \(seed): acknowledged \(ledger)/\(e) lost: \(read)")
                continue
            }
            #expect(bytes == entry(ledger, e, size: size), "seed \(seed): \(ledger)/\(e) reads back different bytes")
        }
        #expect(acknowledged.count > 0)
    }
}
