import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Synchronization
import Testing

@Suite(.serialized) struct SlowBookieTests {
    @Test func aFarSlowerBookieIsReplaced() async throws {
        // Proves a bookie that answers, but far more slowly than the rest of its ensemble, is replaced: one
        // bookie process is paused 800 ms out of every 820 (as a lossy link or a sick disk makes it crawl,
        // without a request ever timing out) while a writer adds under load; the writer moves it out of the
        // ensemble for the spare bookie, and every confirmed entry reads back. (Before, it stayed for good.)
        try await withProcessCluster(bookies: 4) { cluster in
            let (pool, _) = try cluster.client()
            var rng = SystemRandomNumberGenerator()
            let writer = try await LedgerWriter.create(quorums: Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!,
                                                       password: "pw", pool: pool,
                                                       allocator: LedgerIDAllocator(cluster: pool.cluster), using: &rng)
            let slow = writer.ensemble[0]
            let victim = cluster.bookies[cluster.index(of: slow)]
            let stop = StopFlag()
            let pauser = Task.detached {
                while !stop.isSet {
                    victim.kill(SIGSTOP)
                    // Long enough that its median answer stays far above the others' on a loaded machine too.
                    try? await Task.sleep(for: .milliseconds(800))
                    victim.kill(SIGCONT)
                    try? await Task.sleep(for: .milliseconds(20))
                }
                victim.kill(SIGCONT)
            }
            let confirmed = ConfirmedEntries()
            // A paced load (about 200 adds/s) that the paused bookie keeps up with between pauses: its answers
            // are late, but none so late that a request times out.
            let deadline = ContinuousClock.now + .seconds(15)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<2 {
                    group.addTask {
                        var n = 0
                        while ContinuousClock.now < deadline && writer.ensemble.contains(slow) {
                            let id = try await writer.append(Array("lane \(lane) entry \(n)".utf8))
                            confirmed.add(id)
                            n += 1
                            try await Task.sleep(for: .milliseconds(10))
                        }
                    }
                }
                try await group.waitForAll()
            }
            stop.set()
            await pauser.value
            #expect(!writer.ensemble.contains(slow), "the slow bookie \(slow) is still in the ensemble \(writer.ensemble)")
            let closed = try await writer.close()
            let ids = confirmed.all.sorted()
            #expect(!ids.isEmpty && closed.lastEntry >= ids.last!)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: pool)
            for id in ids { _ = try await reader.read(id) }
        }
    }
}

/// Entries confirmed to writer tasks.
final class ConfirmedEntries: Sendable {
    private let ids = Mutex<[EntryID]>([])
    func add(_ id: EntryID) { ids.withLock { $0.append(id) } }
    var all: [EntryID] { ids.withLock { $0 } }
}
