import DLogTestSupport
import Foundation
import Testing

/// The dlog-bench binary, built next to dlogd (so $DLOGD_BIN moves both).
let dlogBenchPath = URL(fileURLWithPath: dlogdPath).deletingLastPathComponent().appendingPathComponent("dlog-bench").path

/// What a finished `dlog-bench` child exited with and printed.
struct BenchRun {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Runs dlog-bench with `arguments`, killing it after `timeout` seconds. Output goes to files, not pipes, so
    /// nothing is lost or blocked however much the child prints.
    init(_ arguments: [String], in dir: TempDir, timeout: TimeInterval = 60) async throws {
        let outPath = dir.sub("bench-\(UUID().uuidString).out"), errPath = outPath + ".err"
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
              FileManager.default.createFile(atPath: errPath, contents: nil) else {
            throw DaemonError("cannot create output files for dlog-bench in \(dir.path)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: dlogBenchPath)
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
        guard let finished = await process.exitStatus(within: timeout) else {
            Foundation.kill(process.processIdentifier, SIGKILL)
            _ = await process.exitStatus(within: 10)
            throw DaemonError("dlog-bench \(arguments.joined(separator: " ")) did not finish within \(timeout) s")
        }
        status = finished
        stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    }
}

@Suite(.serialized) struct MetadataBenchTests {
    @Test func everyAcknowledgedUpdateIsLoggedVerifiedAndTamperingIsCaught() async throws {
        // Proves dlog-bench metadata drives CAS updates against a real metadata role and logs every acknowledged
        // one, verify passes on that log, and verify fails naming the key when the log claims a version the
        // store never reached.
        let dir = TempDir("dlog-md-bench")
        let daemon = try await DaemonProcess.start(["--data-dir", dir.sub("metadata")], role: "metadata")
        defer {
            daemon.kill(SIGKILL)
            _ = daemon.waitForExit()
        }
        let uri = "dlog://127.0.0.1:\(daemon.port)"
        let log = dir.sub("acked.log")
        let keys = 50

        let bench = try await BenchRun(["metadata", "--target", uri, "--clients", "4", "--duration", "2",
                                        "--keys", "\(keys)", "--json", "--acked-log", log], in: dir)
        #expect(bench.status == 0, "dlog-bench metadata failed: \(bench.stderr)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any],
                                  "not one JSON object: \(bench.stdout)")
        let ops = try #require(result["ops"] as? Int)
        #expect(ops > 0)
        #expect(result["backend"] as? String == "dlog")
        #expect(result["errors"] as? Int == 0)
        let latency = try #require(result["latency"] as? [String: Any])
        #expect((latency["p99_ms"] as? Double ?? 0) > 0)
        // One line per create and one per acknowledged update: nothing acknowledged is missing from the log.
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == keys + ops)

        let verified = try await BenchRun(["verify", "--metadata", uri, "--acked-log", log], in: dir)
        #expect(verified.status == 0, "verify failed: \(verified.stdout) \(verified.stderr)")
        #expect(verified.stdout.contains("verified \(keys + ops) acknowledged updates over \(keys) keys: all present"))

        let key = String(try #require(lines.first?.split(separator: " ").first))
        let handle = try #require(FileHandle(forWritingAtPath: log))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\(key) 999999999 00000000\n".utf8))
        try handle.close()
        let tampered = try await BenchRun(["verify", "--metadata", uri, "--acked-log", log], in: dir)
        #expect(tampered.status == 1)
        #expect(tampered.stdout.contains("BAD \(key): acknowledged at version 999999999"), "\(tampered.stdout)")
    }

    @Test func verifyRefusesMalformedLogsAndAmbiguousTargets() async throws {
        // Proves verify names the file and line of a malformed acked log before contacting any store, and
        // insists on exactly one of --target and --metadata.
        let dir = TempDir("dlog-md-bench")
        let log = dir.sub("acked.log")
        try "/bench/x/k000001 7 0000beef\n/bench/x/k000002 seven 0000beef\n".write(toFile: log, atomically: true,
                                                                               encoding: .utf8)
        // Port 1 has no listener: a malformed line must be reported before any connection is tried.
        let malformed = try await BenchRun(["verify", "--metadata", "dlog://127.0.0.1:1", "--acked-log", log], in: dir)
        #expect(malformed.status != 0)
        #expect(malformed.stderr.contains("\(log):2:"), "\(malformed.stderr)")

        let both = try await BenchRun(["verify", "--target", "127.0.0.1:1", "--metadata", "dlog://127.0.0.1:1",
                                       "--acked-log", log], in: dir)
        #expect(both.status != 0)
        #expect(both.stderr.contains("only one of --target"), "\(both.stderr)")

        let neither = try await BenchRun(["verify", "--acked-log", log], in: dir)
        #expect(neither.status != 0)
        #expect(neither.stderr.contains("--metadata URI"), "\(neither.stderr)")
    }
}
