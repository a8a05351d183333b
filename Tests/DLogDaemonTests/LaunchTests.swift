import DLogTestSupport
import Foundation
import Testing

/// `dlogd --config FILE` (what the systemd unit runs): the role comes from the file.
@Suite(.serialized) struct LaunchTests {
    @Test func theConfigFileNamesTheRole() async throws {
        // Proves a config with `role = metadata` starts the metadata role, and a missing, unknown or mismatched
        // role is refused with a message naming the file and the fix.
        let dir = TempDir("dlog-launch")
        let config = dir.sub("meta.conf")
        try "role = metadata\ndata_dir = \(dir.sub("data"))\nport = 0\n".write(toFile: config, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: dlogdPath)
        process.arguments = ["--config", config]
        let out = dir.sub("out")
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("listening on") {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("dlogd metadata listening on"))
        kill(process.processIdentifier, SIGTERM)
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        #expect(process.terminationStatus == 0)

        let none = dir.sub("none.conf")
        try "port = 0\n".write(toFile: none, atomically: true, encoding: .utf8)
        let missing = try runTool(dlogdPath, ["--config", none])
        #expect(missing.status != 0 && missing.stderr.contains("has no 'role = bookie | metadata | proxy' line"), "\(missing.stderr)")
        let odd = dir.sub("odd.conf")
        try "role = archiver\n".write(toFile: odd, atomically: true, encoding: .utf8)
        let unknown = try runTool(dlogdPath, ["--config", odd])
        #expect(unknown.status != 0 && unknown.stderr.contains("role 'archiver' is not one of bookie, metadata, proxy"))
        let mismatch = try runTool(dlogdPath, ["bookie", "--config", config])
        #expect(mismatch.status != 0 && mismatch.stderr.contains("is the metadata role's config (role = metadata), not the bookie role's"),
                "\(mismatch.stderr)")
    }
}
