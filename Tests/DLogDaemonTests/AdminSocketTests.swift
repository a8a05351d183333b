import DLogTestSupport
import Foundation
import Testing

/// A bookie's admin socket through `dlogctl admin`, as an operator uses it.
@Suite(.serialized) struct AdminSocketTests {
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
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let bookie = try await DaemonProcess.start(["--config", config])
        defer { bookie.kill(SIGKILL) }
        func admin(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try runTool(dlogctlPath, ["admin", "--socket", socket] + args)
        }
        let status = try admin(["status", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status)")
        #expect(object["role"] as? String == "bookie" && object["state"] as? String == "writable")
        let permissions = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
        #expect(permissions == 0o660)

        #expect(try admin(["log-level", "debug"]).stdout.contains("debug"))
        #expect(try admin(["status", "--json"]).stdout.contains("\"log_level\":\"debug\""))
        #expect(try admin(["readonly", "on"]).status == 0)
        #expect(try admin(["status"]).stdout.contains("read-only"))
        #expect(try admin(["config"]).stdout.contains("journalFileBytes"))
        let unknown = try admin(["frobnicate"])
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown command 'frobnicate'") && unknown.stderr.contains("readonly"))
        let badLevel = try admin(["log-level", "loud"])
        #expect(badLevel.status == 1 && badLevel.stderr.contains("log level 'loud' is not one of"))

        bookie.kill(SIGTERM)
        #expect(await bookie.exited() == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "a clean stop removes the socket")
        let gone = try admin(["status"])
        #expect(gone.status == 1 && gone.stderr.contains("not running (socket \(socket))"))
    }
}
