import DLogIO
import DLogTestSupport
import Foundation
import Testing

@Suite struct AllocatorTests {
    /// Two arenas at least (one thread allocating while another holds the first need not wait), one per core
    /// beyond that, four at most: fragmentation grows with every arena.
    @Test func theLimitFollowsTheCoresWithinBounds() {
        #expect([1, 2, 3, 4, 8, 64].map { Memory.arenaLimit(cores: $0) } == [2, 2, 3, 4, 4, 4])
    }

    /// Proves dlogd limits its allocator's arenas before its threads start, and says so in one line; an
    /// operator's MALLOC_ARENA_MAX wins and is named instead. (Per-thread arenas left a bookie idle after
    /// filling a million ledgers at 290 MB of RSS, against 187 MB with two.)
    @Test func dlogdLimitsItsArenasUnlessTheEnvironmentChose() async throws {
        let dir = TempDir("dlog-arenas")
        let expected = Memory.arenaLimit(cores: ProcessInfo.processInfo.activeProcessorCount)
        let limited = try await DaemonProcess.start(["--journal-dir", dir.sub("j1"), "--ledger-dir", dir.sub("l1")],
                                                    environment: ["MALLOC_ARENA_MAX": ""])
        limited.kill(SIGTERM)
        _ = await limited.exited()
        #expect(limited.stderr.contains("memory allocator limited to \(expected) arenas"), "\(limited.stderr)")
        let chosen = try await DaemonProcess.start(["--journal-dir", dir.sub("j2"), "--ledger-dir", dir.sub("l2")],
                                                   environment: ["MALLOC_ARENA_MAX": "3"])
        chosen.kill(SIGTERM)
        _ = await chosen.exited()
        #expect(chosen.stderr.contains("memory allocator arenas left to MALLOC_ARENA_MAX=3"), "\(chosen.stderr)")
    }
}
