import DLogDaemon
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// A bookie's admin socket through `dlogctl admin`, as an operator uses it.
@Suite(.serialized) struct AdminSocketTests {
    @Test func aBookieWithoutLatencyHistogramsCountsButRecordsNone() async throws {
        // Proves `latency_histograms = false` (what scripts/bench-metrics.sh compares against) leaves out every
        // histogram and keeps the counters: the switch changes only the recording.
        let dir = TempDir("dlog-no-histograms")
        let config = dir.sub("bookie.conf")
        try (smallBookieConfig(under: dir) + "metrics_port = 0\nlatency_histograms = false\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let bookie = try await DaemonProcess.start(["--config", config])
        defer { bookie.kill(SIGKILL) }
        let client = try await bookie.client()
        for e: Int64 in 0..<3 { _ = try await client.send(.add(masterKey: testKey, entry: entry(7, e), recovery: false)) }
        await client.close()
        let logged = bookie.stderr
        let range = try #require(logged.range(of: "metrics serving address=127.0.0.1:"), "\(logged)")
        let scrape = try httpGet(port: try #require(Int(logged[range.upperBound...].prefix { $0.isNumber })), path: "/metrics")
        let exposition = Exposition(String(scrape[try #require(scrape.range(of: "\r\n\r\n")).upperBound...]))
        #expect(exposition.values("dlog_bookie_adds_total").first == 3, "\(scrape)")
        #expect(!exposition.types.values.contains("histogram"), "\(exposition.types.filter { $0.value == "histogram" }.keys.sorted())")
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
    }

    @Test func anOperatorAsksAndSteersABookieThroughItsAdminSocket() async throws {
        // Proves status, config, log-level and readonly work through the socket, unknown commands and a daemon
        // that is not running get clear errors, the socket is 0660, and a clean stop removes it.
        let dir = TempDir("dlog-admin")
        let socket = dir.sub("run/bookie.sock")
        let config = dir.sub("bookie.conf")
        try """
            journal_dirs = \(dir.sub("j"))
            ledger_dirs = \(dir.sub("l"))
            journal_file_bytes = 8M
            journal_files_max = 3
            max_frame_bytes = 1M
            allow_shared_device = true
            admin_socket = \(socket)
            metrics_port = 0
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let bookie = try await DaemonProcess.start(["--config", config])
        defer { bookie.kill(SIGKILL) }
        func admin(_ args: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
            try await runTool(dlogctlPath, ["admin", "--socket", socket] + args)
        }
        // The socket may come first, as in `dlogctl --socket PATH admin status`.
        let first = try await runTool(dlogctlPath, ["--socket", socket, "admin", "status", "--json"])
        #expect(first.status == 0 && first.stdout.contains("\"role\":\"bookie\""), "\(first)")
        let status = try await admin(["status", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status)")
        #expect(object["role"] as? String == "bookie" && object["state"] as? String == "writable")
        let permissions = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        #expect(permissions == 0o660)

        // The bookie's own commands: ledgers it stores, an entry read back through the socket, disks, journal
        // statistics, and gc refused with the reason when there is no metadata to compare with.
        let client = try await bookie.client()
        for e: Int64 in 0..<3 {
            #expect(try await client.send(.add(masterKey: testKey, entry: entry(7, e), recovery: false)) == .added(ledger: LedgerID(7), entry: EntryID(e)))
        }
        let listed = try await admin(["ledger", "list"])
        #expect(listed.status == 0 && listed.stdout.contains("ledgers:") && listed.stdout.contains("L7"), "\(listed)")
        let info = try await admin(["ledger", "info", "L7", "--json"])
        #expect(info.stdout.contains("\"entries\":3") && info.stdout.contains("\"fenced\":false"), "\(info)")
        let read = try await admin(["ledger", "read-entry", "7", "0", "--json"])
        #expect(read.status == 0 && read.stdout.contains("\"payload_bytes\":200") && read.stdout.contains("\"crc\":\"ok\""), "\(read)")
        let missing = try await admin(["ledger", "read-entry", "L7", "9"])
        #expect(missing.status == 1 && missing.stderr.contains("L7/E9 is not on this bookie"), "\(missing)")
        let badLedger = try await admin(["ledger", "info", "seven"])
        #expect(badLedger.status == 1 && badLedger.stderr.contains("'seven' is not a ledger id"), "\(badLedger)")
        let disks = try await admin(["disks"])
        #expect(disks.stdout.contains("disks:") && disks.stdout.contains(dir.sub("j")) && disks.stdout.contains("read_only_above"), "\(disks)")
        let journal = try await admin(["journal"])
        #expect(journal.stdout.contains("journals:") && journal.stdout.contains("j0_sync_latency:") && journal.stdout.contains("< "), "\(journal)")
        let gc = try await admin(["gc"])
        #expect(gc.status == 1 && gc.stderr.contains("runs alone"), "\(gc)")

        #expect(try await admin(["log-level", "debug"]).stdout.contains("debug"))
        #expect(try await admin(["status", "--json"]).stdout.contains("\"log_level\":\"debug\""))
        #expect(try await admin(["readonly", "on"]).status == 0)
        #expect(try await admin(["status"]).stdout.contains("read-only"))
        #expect(try await admin(["config"]).stdout.contains("journalFileBytes"))
        let unknown = try await admin(["frobnicate"])
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown command 'frobnicate'") && unknown.stderr.contains("readonly"))
        let badLevel = try await admin(["log-level", "loud"])
        #expect(badLevel.status == 1 && badLevel.stderr.contains("log level 'loud' is not one of"))

        // SIGHUP reloads the config's log_level and disk thresholds (a threshold below the disk's usage makes the
        // bookie read-only at its next disk check); a file that no longer parses changes nothing.
        _ = try await admin(["readonly", "off"])
        #expect(try await admin(["status"]).stdout.contains("writable"), "the operator's read-only is off again")
        let original = try String(contentsOfFile: config, encoding: .utf8)
        try (original + "\nlog_level = warning\ndisk_usage_threshold = 0.0001\ndisk_usage_lwm = 0.00005\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        bookie.kill(SIGHUP)
        var level = "", state = ""
        for _ in 0..<100 where level != "warning" || state != "read-only" {
            try await Task.sleep(for: .milliseconds(50))
            let now = (try? JSONSerialization.jsonObject(with: Data(try await admin(["status", "--json"]).stdout.utf8)) as? [String: Any]) ?? [:]
            level = now["log_level"] as? String ?? ""
            state = now["state"] as? String ?? ""
        }
        #expect(level == "warning", "SIGHUP applied the config's log_level")
        #expect(state == "read-only", "SIGHUP applied the disk threshold")
        #expect(try await admin(["disks", "--json"]).stdout.contains("\"read_only_above\":\"0%\""))
        try (original + "\nlog_level = loud\ndisk_usage_threshold = 0.9\n").write(toFile: config, atomically: true, encoding: .utf8)
        bookie.kill(SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await admin(["status", "--json"]).stdout.contains("\"log_level\":\"warning\""), "a bad reload keeps the running level")
        #expect(bookie.stderr.contains("reload refused; the running settings stay"), "\(bookie.stderr)")

        // Metrics: Prometheus text over HTTP, and the same through the admin socket.
        let logged = bookie.stderr
        let range = try #require(logged.range(of: "metrics serving address=127.0.0.1:"), "\(logged)")
        let metricsPort = try #require(Int(logged[range.upperBound...].prefix { $0.isNumber }))
        let scrape = try httpGet(port: metricsPort, path: "/metrics")
        #expect(scrape.hasPrefix("HTTP/1.1 200") && scrape.contains("dlog_journal_syncs_total{journal=\"0\"}")
                && scrape.contains("dlog_bookie_adds_total 3") && scrape.contains("dlog_bookie_read_only 1"), "\(scrape)")
        #expect(try httpGet(port: metricsPort, path: "/other").hasPrefix("HTTP/1.1 404"))
        // Real histograms (bucket, sum, count): the 3 adds' service time, and the journal's syncs and batches. The
        // admin socket shows the same families as the port.
        let exposition = Exposition(String(scrape[scrape.range(of: "\r\n\r\n")!.upperBound...]))
        #expect(exposition.problems.isEmpty, "\(exposition.problems)")
        #expect(exposition.count("dlog_bookie_request_duration_seconds", ["op": "add"]) == 3, "\(scrape)")
        #expect((exposition.count("dlog_journal_sync_duration_seconds", ["journal": "0"]) ?? 0) >= 1, "\(scrape)")
        #expect((exposition.count("dlog_journal_queue_wait_seconds", ["journal": "0"]) ?? 0) >= 3, "each add waited for a batch: \(scrape)")
        #expect(exposition.types["dlog_journal_batch_records"] == "histogram" && exposition.types["dlog_journal_batch_bytes"] == "histogram")
        let viaSocket = Exposition(try await admin(["metrics"]).stdout)
        #expect(viaSocket.problems.isEmpty && Set(viaSocket.types.keys) == Set(exposition.types.keys),
                "\(viaSocket.problems) \(Set(viaSocket.types.keys).symmetricDifference(exposition.types.keys))")
        #expect(try await admin(["disks", "--json"]).stdout.contains("\"read_only_above\":\"0%\""), "a refused reload changed no threshold")

        // A client that connects and never sends holds the socket for 5 s at most: the next one is served.
        let stalled = try connectUnix(socket)
        defer { close(stalled) }
        let afterStall = try await admin(["status", "--json"])
        #expect(afterStall.status == 0 && afterStall.stdout.contains("\"role\":\"bookie\""), "\(afterStall)")

        bookie.kill(SIGTERM)
        #expect(await bookie.exited() == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "a clean stop removes the socket")
        let gone = try await admin(["status"])
        #expect(gone.status == 1 && gone.stderr.contains("not running (socket \(socket))"))
    }
}

/// A connected Unix stream socket to `path` (the caller closes it).
func connectUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); throw DaemonError("socket path too long: \(path)") }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let connected = withUnsafePointer(to: &address) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else { close(fd); throw DaemonError("cannot connect to \(path)") }
    return fd
}

/// One HTTP GET over a plain socket; the whole response as text.
func httpGet(port: Int, path: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw DaemonError("cannot connect to 127.0.0.1:\(port)") }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { break }
        response += chunk[0..<n]
    }
    return String(decoding: response, as: UTF8.self)
}
