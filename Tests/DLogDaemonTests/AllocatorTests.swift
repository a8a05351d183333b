import DLogIO
import DLogTestSupport
import Foundation
import Testing

@Suite struct AllocatorTests {
    /// Proves dlogd allocates through jemalloc, asked of the running process (the library that defines the malloc
    /// it resolves), and says so in one line at start. Under glibc's malloc a proxy draining 100,000 streams spent
    /// over a third of its CPU in arena locks and chunk consolidation.
    @Test func dlogdAllocatesThroughJemalloc() async throws {
        let dir = TempDir("dlog-allocator")
        let daemon = try await DaemonProcess.start(["--journal-dir", dir.sub("j"), "--ledger-dir", dir.sub("l")])
        daemon.kill(SIGTERM)
        _ = await daemon.exited()
        #expect(daemon.stderr.contains("memory allocator: jemalloc 5."), "\(daemon.stderr)")
    }

    /// The same question asked of a process that does not link jemalloc (this test runner) names glibc's
    /// library, so the answer above is not a constant.
    @Test func aProcessWithoutJemallocNamesTheMallocItUses() {
        guard case .other(let library) = Memory.allocator else {
            Issue.record("the test runner reports \(Memory.allocator)")
            return
        }
        #expect(library.contains("libc.so"), "\(library)")
    }
}
