import DLogTestSupport
import Foundation
import Testing

/// A dlogctl command that waits says what for, on standard error, instead of sitting silent until it gives up.
@Suite struct WaitNoticeTests {
    @Test func aCommandWaitingForTheMetadataStoreSaysSo() async throws {
        // Proves a command whose metadata store takes its connection but never answers (a hung host, a stalled
        // role) says it waits for that store, by URI, before it fails at its request timeout.
        let silent = try SilentPort()
        defer { silent.close() }
        let uri = "dlog://127.0.0.1:\(silent.port)"
        let run = try await runTool(dlogctlPath, ["log", "list", "--metadata", uri], seconds: 60)
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("dlogctl: waiting for the metadata store at \(uri) to answer"), "\(run.stderr)")
    }

    @Test func aWriteWaitingForAProxySaysWhyAndForHowLong() async throws {
        // Proves `dlogctl write` to a proxy that does not answer says what it waits for (the stream, the proxy's
        // address and its error) and how much longer it tries, instead of 30 silent seconds.
        let dir = TempDir("dlog-wait-notice")
        let input = dir.sub("one.txt")
        try "one\n".write(toFile: input, atomically: true, encoding: .utf8)
        let proxy = "127.0.0.1:\(try freeLoopbackPort())"
        let run = try await runTool(dlogctlPath, ["write", "waiting", "--file", input, "--proxy", proxy], seconds: 90)
        #expect(run.status == 1, "\(run)")
        let notices = run.stderr.split(separator: "\n").filter { $0.hasPrefix("dlogctl: waiting: stream 'waiting': \(proxy)") }
        #expect(!notices.isEmpty && notices.allSatisfy { $0.contains("trying again for up to") }, "\(run.stderr)")
        #expect(notices.count < 20, "the same reason is repeated at most every 5 s: \(notices.count) lines")
    }
}

/// A port that takes connections (the kernel completes them into its backlog) and never answers anything.
final class SilentPort: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        (fd, port) = try boundLoopbackSocket()
        guard listen(fd, 16) == 0 else {
            Glibc.close(fd)
            throw DaemonError("cannot listen on a silent port: errno \(errno)")
        }
    }

    func close() { Glibc.close(fd) }
}
