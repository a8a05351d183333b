import DistributedLog
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// A tool run with its output going to files (as a pipe into another program would: block-buffered), read
/// while it runs.
final class ToolRun {
    let process = Process()
    let dir = TempDir("dlog-tool")
    var stdoutPath: String { dir.sub("out") }
    var stderrPath: String { dir.sub("err") }

    init(_ path: String, _ arguments: [String], stdin: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        if let stdin {
            let input = dir.sub("in")
            try stdin.write(toFile: input, atomically: true, encoding: .utf8)
            process.standardInput = FileHandle(forReadingAtPath: input)
        }
        try process.run()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// Waits (sleeping) for the exit, killing it after `seconds`; returns the status.
    func exited(seconds: Double = 60) async -> Int32 {
        if let status = await process.exitStatus(within: seconds) { return status }
        kill(process.processIdentifier, SIGKILL)
        return await process.exitStatus(within: 10) ?? -1
    }
}

/// Starts a `dlogd proxy` of the cluster.
private func startProxy(_ cluster: ProcessCluster, _ name: String) async throws -> DaemonProcess {
    let config = cluster.dir.sub("\(name).conf")
    try "metadata = \(cluster.uri)\nmetrics_port = 0\n".write(toFile: config, atomically: true, encoding: .utf8)
    return try await DaemonProcess.start(["--config", config], role: "proxy")
}

@Suite(.serialized) struct MetadataOutageTests {
    @Test func writesRideOutAMetadataOutage() async throws {
        // Proves a metadata outage is a retryable condition end to end: while the metadata role is down, a
        // proxy answers UNAVAILABLE (before, INTERNAL_ERROR, which no client retries), so a client's first write
        // to a new stream and a `dlogctl write` both succeed once the role is back, within their retry budget.
        try await withProcessCluster(bookies: 3) { cluster in
            let proxy = try await startProxy(cluster, "proxy")
            defer { proxy.kill(SIGKILL) }
            let address = "127.0.0.1:\(proxy.port)"
            let client = ProxyClient(proxies: [address])
            try await client.create("before")
            _ = try await client.write("before", Array("warm".utf8))

            await cluster.killMetadata()
            let ctl = try ToolRun(dlogctlPath, ["write", "during-ctl", "--proxy", address], stdin: "a\nb\nc\n")
            let write = Task { try await client.write("during", Array("first".utf8)) }
            try await Task.sleep(for: .seconds(4))
            #expect(ctl.process.isRunning, "dlogctl gave up during the outage: \(ctl.stderr)")
            try await cluster.startMetadata()
            let dlsn = try await write.value
            #expect(await ctl.exited() == 0, "dlogctl write: \(ctl.stderr)")
            #expect(ctl.stdout.contains("wrote 3 record(s) to during-ctl"), "\(ctl.stdout)")

            let (pool, _) = try cluster.client()
            let reader = try await Namespace(pool: pool).openReader("during")
            let records = try await reader.readBulk(max: 10, wait: .seconds(5))
            #expect(records.first?.dlsn == dlsn && records.first?.payload == Array("first".utf8))
            await client.shutdown()
        }
    }

    @Test func toolsTakeSeveralProxiesAndFailOver() async throws {
        // Proves dlogctl and dlog-bench take a list of proxies and fail over: the first address listed has no
        // proxy behind it, and both tools still write through the live ones. (Before, --proxy took one address.)
        try await withProcessCluster(bookies: 3) { cluster in
            let proxies = [try await startProxy(cluster, "p1"), try await startProxy(cluster, "p2")]
            defer { for p in proxies { p.kill(SIGKILL) } }
            let list = (["127.0.0.1:1"] + proxies.map { "127.0.0.1:\($0.port)" }).joined(separator: ",")
            let ctl = try ToolRun(dlogctlPath, ["write", "several", "--proxy", list], stdin: (0..<20).map { "r\($0)" }.joined(separator: "\n"))
            #expect(await ctl.exited() == 0, "\(ctl.stderr)")
            #expect(ctl.stdout.contains("wrote 20 record(s) to several"), "\(ctl.stdout)")

            let bench = try ToolRun(dlogBenchPath, ["log", "--proxy", list, "--metadata", cluster.uri, "--streams", "2",
                                                   "--clients", "2", "--duration", "1", "--json"])
            #expect(await bench.exited() == 0, "\(bench.stderr)")
            #expect(bench.stdout.contains("\"ops\""), "\(bench.stdout)")

            let bad = try ToolRun(dlogctlPath, ["write", "several", "--proxy", "127.0.0.1:3190,nonsense"], stdin: "x\n")
            #expect(await bad.exited() != 0)
            #expect(bad.stderr.contains("nonsense"), "\(bad.stderr)")
        }
    }

    @Test func aFollowingReadRidesOutAMetadataRestartAndFlushesEachRecord() async throws {
        // Proves `dlogctl read --follow` prints each record as it arrives even into a file (before, its output
        // was block-buffered, so a killed tail lost what it had read), and keeps tailing across a restart of the
        // metadata role (before, it exited).
        try await withProcessCluster(bookies: 3) { cluster in
            let (pool, _) = try cluster.client()
            let namespace = Namespace(pool: pool)
            var writer = try await namespace.openWriter("tail")
            for n in 0..<5 { _ = try await writer.writeBulk(assigning: [(nil, Array("before-\(n)".utf8))]) }
            try await writer.close()

            let tail = try ToolRun(dlogctlPath, ["read", "tail", "--follow", "--metadata", cluster.uri])
            try await eventually("the first 5 records printed while following", seconds: 20) { tail.lines.count >= 5 }

            try await cluster.restartMetadata(after: .seconds(2))
            writer = try await namespace.openWriter("tail")
            for n in 0..<5 { _ = try await writer.writeBulk(assigning: [(nil, Array("after-\(n)".utf8))]) }
            try await writer.close()
            try await eventually("the records written after the restart printed", seconds: 30) { tail.lines.count >= 10 }
            #expect(tail.process.isRunning, "the tail is still following: \(tail.stderr)")
            kill(tail.process.processIdentifier, SIGKILL)
            _ = await tail.exited()
            let payloads = tail.lines.map { $0.split(separator: "\t").last.map(String.init) ?? "" }
            #expect(payloads == (0..<5).map { "before-\($0)" } + (0..<5).map { "after-\($0)" }, "\(tail.stdout)")
        }
    }
}
