import DLogTestSupport
import Foundation
import Testing

/// Runs `BookieSimulation` over seeds. `make test` runs a bounded number; `make simulate SEEDS=N` runs more
/// (environment: DLOG_SIM_SEEDS, DLOG_SIM_STEPS, and DLOG_SIM_SEED to replay one seed, or to start from it).
/// DLOG_SIM_DEBUG=1 adds the disk's file digests after every step to the trace, so when two runs of a seed part,
/// `aSeedGivesTheSameRunTwice` names the first step where they did.
@Suite struct BookieSimulationTests {
    private static func setting(_ name: String) -> UInt64? {
        ProcessInfo.processInfo.environment[name].flatMap { UInt64($0) }
    }

    /// Seeded runs of adds, fences, deletes, checkpoints, compaction, restarts, power cuts, a full disk and a
    /// failed journal sync, each checked after every step (see `BookieSimulation`). Each failure names its seed.
    /// Runs `body` on a thread of its own. A simulation runs the bookie on its one thread for up to a minute
    /// without awaiting anything: on one of the test run's cooperative threads (two, on this machine) it would
    /// starve every other test's tasks, and their leases lapse.
    private static func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { done in
            Thread.detachNewThread { done.resume(with: Result { try body() }) }
        }
    }

    @Test func seededRunsKeepEveryPromise() async throws {
        let seeds = Self.setting("DLOG_SIM_SEEDS") ?? 16
        let steps = Int(Self.setting("DLOG_SIM_STEPS") ?? 60)
        let first = Self.setting("DLOG_SIM_SEED") ?? UInt64.random(in: 1 ... UInt64(UInt32.max))
        print("bookie simulation: seeds \(first)...\(first + seeds - 1), \(steps) steps each")
        let started = ContinuousClock.now
        var failures = 0
        for seed in first ..< first + seeds {
            let failure: String? = try await Self.onOwnThread {
                let simulation = try BookieSimulation(seed: seed)
                defer { simulation.finish() }
                do {
                    try simulation.run(steps: steps)
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            if let failure {
                failures += 1
                Issue.record("\(failure)")
            }
        }
        let elapsed = ContinuousClock.now - started
        print("bookie simulation: \(seeds) seeds, \(failures) failed, in \(elapsed)")
    }

    /// The same seed gives the same run: two runs of one seed take the same steps, get the same answers and
    /// leave the same bytes on the disk, so a failure's seed replays it.
    @Test func aSeedGivesTheSameRunTwice() async throws {
        let seed = Self.setting("DLOG_SIM_SEED") ?? UInt64.random(in: 1 ... UInt64(UInt32.max))
        var runs: [(steps: [String], trace: [String], disk: [String: UInt64])] = []
        for _ in 0 ..< 2 {
            runs.append(try await Self.onOwnThread {
                let simulation = try BookieSimulation(seed: seed)
                try simulation.run(steps: 50)
                simulation.finish()
                return (simulation.steps, simulation.trace, try simulation.diskDigest())
            })
        }
        #expect(runs[0].steps == runs[1].steps, "seed \(seed): the steps differ")
        let (first, second) = (runs[0].trace, runs[1].trace)
        if let i = first.indices.first(where: { $0 < second.count && first[$0] != second[$0] }) {
            Issue.record("seed \(seed): answer \(i) differs: \(first[i]) / \(second[i])")
        }
        #expect(runs[0].trace.count == runs[1].trace.count, "seed \(seed)")
        let differing = Set(runs[0].disk.keys).union(runs[1].disk.keys).filter { runs[0].disk[$0] != runs[1].disk[$0] }
        #expect(differing.isEmpty, "seed \(seed): these files differ: \(differing.sorted())")
    }
}
