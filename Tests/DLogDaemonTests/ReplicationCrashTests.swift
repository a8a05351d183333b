import DLogTestSupport
import Foundation
import Testing

/// Replicated writes through real processes: a metadata role, bookies registered in it, and dlog-bench ledger as
/// the writer; one bookie is killed with SIGKILL while adds are in flight.
@Suite(.serialized) struct ReplicationCrashTests {
    @Test(arguments: [(3, 3, 2), (5, 3, 2)])
    func aBookieKilledMidWriteLosesNoConfirmedEntry(_ shape: (Int, Int, Int)) async throws {
        // Proves that with 5 bookies, SIGKILL of one bookie of the writers' ensembles mid-write does not fail the
        // writes (ensemble change), and every confirmed entry reads back intact afterwards (verify recovers each
        // ledger and checks every entry's CRC).
        let (e, qw, qa) = shape
        let dir = TempDir("dlog-repl")
        let metadata = try await DaemonProcess.start(["--data-dir", dir.sub("metadata")], role: "metadata")
        let uri = "dlog://127.0.0.1:\(metadata.port)"
        let initialized = try await runTool(dlogctlPath, ["cluster", "init", "--metadata", uri])
        #expect(initialized.status == 0, "\(initialized.stderr)")
        var bookies: [DaemonProcess] = []
        for index in 0..<5 {
            let config = dir.sub("bookie\(index).conf")
            try """
                journal_dirs = \(dir.sub("b\(index)/journal"))
                ledger_dirs = \(dir.sub("b\(index)/ledgers"))
                journal_file_bytes = 8M
                journal_files_max = 3
                max_frame_bytes = 1M
                allow_shared_device = true
                metadata = \(uri)
                bookie_id = bookie-\(index)
                """.write(toFile: config, atomically: true, encoding: .utf8)
            bookies.append(try await DaemonProcess.start(["--config", config]))
        }
        defer {
            for bookie in bookies { bookie.kill(SIGKILL); _ = bookie.waitForExit() }
            metadata.kill(SIGKILL)
            _ = metadata.waitForExit()
        }
        let log = dir.sub("acked.log")
        let bench = Process()
        bench.executableURL = URL(fileURLWithPath: dlogBenchPath)
        bench.arguments = ["ledger", "--metadata", uri, "--ensemble", "\(e)", "--write-quorum", "\(qw)",
                           "--ack-quorum", "\(qa)", "--clients", "4", "--pipeline", "8", "--size", "512",
                           "--duration", "4", "--json", "--acked-log", log]
        // Its report (JSON) on standard output; what the ledger client logs (ensemble changes) on standard error.
        let outPath = dir.sub("bench.out"), errPath = dir.sub("bench.err")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        bench.standardOutput = FileHandle(forWritingAtPath: outPath)
        bench.standardError = FileHandle(forWritingAtPath: errPath)
        try bench.run()
        // Waits sleep instead of blocking a thread: other tests run on the same few threads meanwhile.
        try await Task.sleep(for: .milliseconds(1500))
        // Every writer's ensemble holds E of the 5 bookies: killing bookie-1 hits most of them.
        bookies[1].kill(SIGKILL)
        var benchStatus = await bench.exitStatus(within: 60)
        if benchStatus == nil {
            bench.terminate()
            benchStatus = await bench.exitStatus(within: 10)
        }
        let report = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let logged = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        #expect(benchStatus == 0, "the writers failed: \(report)\(logged)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any])
        #expect((result["ops"] as? Int ?? 0) > 100 && (result["errors"] as? Int) == 0)
        // The fields of `dlog-bench bookie`, the journal ones summed over the bookies.
        #expect(Set(result.keys).isSuperset(of: ["ops", "errors", "ops_per_sec", "mb_per_sec", "p50_ms", "p99_ms", "p999_ms",
                                                  "max_ms", "syncs_per_sec", "entries_per_sync", "engine", "sync_mode"]))
        #expect((result["syncs_per_sec"] as? Double ?? 0) > 0 && !(result["engine"] as? String ?? "").isEmpty)

        let verify = try await BenchRun(["verify", "--metadata", uri, "--acked-log", log], in: dir)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("all present and intact"))
        print("replication crash test E=\(e) Qw=\(qw) Qa=\(qa): \(verify.stdout)")
    }
}
