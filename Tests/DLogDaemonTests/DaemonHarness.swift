import DLogTestSupport
import DLogLedger
import DLogWire
import Foundation
import Synchronization
import Testing

/// What a child prints, in two files (no pipes: nothing to drain, and no dispatch sources watching descriptors that
/// may be closed while a test tears down); read whole when asked.
final class Captured: Sendable {
    let stdoutPath: String
    let stderrPath: String

    init() throws {
        let base = NSTemporaryDirectory() + "dlogd-test-\(UUID().uuidString)"
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        guard FileManager.default.createFile(atPath: stdoutPath, contents: nil),
              FileManager.default.createFile(atPath: stderrPath, contents: nil) else {
            throw DaemonError("cannot create output files at \(base)")
        }
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func remove() {
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
    }
}

/// The dlogd binary built next to these tests (or $DLOGD_BIN).
let dlogdPath: String = {
    if let p = ProcessInfo.processInfo.environment["DLOGD_BIN"] { return p }
    let root = String(#filePath).components(separatedBy: "/Tests/")[0]
    return root + "/.build/debug/dlogd"
}()

/// A real `dlogd` child process (bookie unless told otherwise) on a free loopback port. Every property is set once in `init`;
/// what the child prints goes to `output`'s files.
final class DaemonProcess: Sendable {
    let process: Process
    let output: Captured
    private let generatedConfig: String?

    /// The port from the child's "listening on" line; 0 until it printed one.
    var port: Int {
        let text = output.stdout
        guard let range = text.range(of: "listening on 127.0.0.1:") else { return 0 }
        return Int(text[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }

    deinit {
        if let generatedConfig { try? FileManager.default.removeItem(atPath: generatedConfig) }
        output.remove()
    }

    /// Launches dlogd with `arguments` after the role, without waiting: for a child expected to refuse and
    /// exit (see `exited`). `start` waits for one that should serve.
    /// `environment`: variables set for the child over the test's own (an empty value removes one).
    init(_ arguments: [String], role: String = "bookie", environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: dlogdPath)
        if !environment.isEmpty {
            var merged = ProcessInfo.processInfo.environment
            for (name, value) in environment { merged[name] = value.isEmpty ? nil : value }
            process.environment = merged
        }
        var arguments = arguments
        var generated: String? = nil
        if role == "bookie" && !arguments.contains("--config") {
            // Small journal files: the defaults pre-write 512 MiB per fresh bookie, which tests do not need.
            let conf = NSTemporaryDirectory() + "dlogd-test-\(UUID().uuidString).conf"
            try "journal_file_bytes = 8M\njournal_files_max = 3\nmax_frame_bytes = 1M\n"
                .write(toFile: conf, atomically: true, encoding: .utf8)
            arguments += ["--config", conf]
            generated = conf
        }
        let picksPort = role != "standalone" && !arguments.contains("--port")
        process.arguments = [role] + (picksPort ? ["--port", "0"] : []) + arguments
        let output = try Captured()
        process.standardOutput = FileHandle(forWritingAtPath: output.stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: output.stderrPath)
        self.output = output
        self.process = process
        generatedConfig = generated
        try process.run()
    }

    /// Starts dlogd and waits for its "listening on" line by sleeping, not by holding one of the few threads
    /// every test shares: for async tests.
    static func start(_ arguments: [String], role: String = "bookie",
                      environment: [String: String] = [:]) async throws -> DaemonProcess {
        let daemon = try DaemonProcess(arguments, role: role, environment: environment)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if daemon.port != 0 { return daemon }
            if daemon.process.statusIfExited != nil { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        daemon.kill(SIGKILL)
        throw DaemonError("dlogd did not start: \(daemon.stderr)")
    }

    /// Waits (sleeping) for the child to exit; kills it after `timeout`. Returns the exit status.
    func exited(timeout: Duration = .seconds(30)) async -> Int32 {
        let (seconds, attoseconds) = timeout.components
        if let status = await process.exitStatus(within: Double(seconds) + Double(attoseconds) / 1e18) { return status }
        kill(SIGKILL)
        return await process.exitStatus(within: 10) ?? -1
    }

    func kill(_ signal: Int32) {
        if process.isRunning { Foundation.kill(process.processIdentifier, signal) }
    }

    /// Waits for exit (bounded) and returns the status, holding the thread: for `defer` blocks after SIGKILL,
    /// where the exit is immediate; elsewhere use `exited`.
    func waitForExit(timeout: TimeInterval = 30) -> Int32 {
        if let status = process.exitStatusHoldingThread(within: timeout) { return status }
        kill(SIGKILL)
        return process.exitStatusHoldingThread(within: 10) ?? -1
    }

    var stderr: String { output.stderr }

    func client() async throws -> BookieClient { try await BookieClient.connect(host: "127.0.0.1", port: port) }
}

struct DaemonError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The config lines of a small test bookie keeping its data under `dir` (8 MiB journal files, 1 MiB frames).
func smallBookieConfig(under dir: TempDir) -> String {
    """
    journal_dirs = \(dir.sub("b/journal"))
    ledger_dirs = \(dir.sub("b/ledgers"))
    journal_file_bytes = 8M
    journal_files_max = 3
    max_frame_bytes = 1M
    allow_shared_device = true

    """
}

let testKey = MasterKey(password: "daemon-test")

/// Deterministic entry content, so a reader can check bytes without keeping them.
func entry(_ ledger: UInt64, _ e: Int64, size: Int = 200) -> [UInt8] {
    EntryCodec.encode(EntryHeader(ledger: LedgerID(ledger), entry: EntryID(e), lastAddConfirmed: EntryID(e - 1),
                                  ledgerLength: UInt64(e + 1) * UInt64(size)),
                      payload: (0..<(size + Int(e % 7) * 100)).map { UInt8(truncatingIfNeeded: Int(ledger) &* 31 &+ Int(e) &* 7 &+ $0) })
}
