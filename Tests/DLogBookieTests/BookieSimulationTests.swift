import DLogTestSupport
import Foundation
import Testing

/// Runs `BookieSimulation` over seeds. `make test` runs a bounded number; `make simulate SEEDS=N` runs more
/// (environment: DLOG_SIM_SEEDS, DLOG_SIM_STEPS, and DLOG_SIM_SEED to replay one seed, or to start from it).
@Suite struct BookieSimulationTests {
    private static func setting(_ name: String) -> UInt64? {
        ProcessInfo.processInfo.environment[name].flatMap { UInt64($0) }
    }

    /// Seeded runs of adds, fences, deletes, checkpoints, compaction, restarts, power cuts, a full disk and a
    /// failed journal sync, each checked after every step (see `BookieSimulation`). Each failure names its seed.
    @Test func seededRunsKeepEveryPromise() async throws {
        let seeds = Self.setting("DLOG_SIM_SEEDS") ?? 16
        let steps = Int(Self.setting("DLOG_SIM_STEPS") ?? 60)
        let first = Self.setting("DLOG_SIM_SEED") ?? UInt64.random(in: 1 ... UInt64(UInt32.max))
        print("bookie simulation: seeds \(first)...\(first + seeds - 1), \(steps) steps each")
        let started = ContinuousClock.now
        var failures = 0
        for seed in first ..< first + seeds {
            let simulation = try BookieSimulation(seed: seed)
            do {
                try await simulation.run(steps: steps)
            } catch {
                failures += 1
                Issue.record("\(error)")
            }
            simulation.finish()
        }
        let elapsed = ContinuousClock.now - started
        print("bookie simulation: \(seeds) seeds, \(failures) failed, in \(elapsed)")
    }
}
