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
        #expect(await process.exitStatus(within: 60) == 0)

        let none = dir.sub("none.conf")
        try "port = 0\n".write(toFile: none, atomically: true, encoding: .utf8)
        let missing = try await runTool(dlogdPath, ["--config", none])
        // A refusal is exit 2 (the unit does not restart it) and one line, without the usage text.
        #expect(missing.status == 2 && !missing.stderr.contains("USAGE") && missing.stderr.contains("has no 'role = bookie | metadata | proxy | standalone' line"), "\(missing.stderr)")
        let odd = dir.sub("odd.conf")
        try "role = archiver\n".write(toFile: odd, atomically: true, encoding: .utf8)
        let unknown = try await runTool(dlogdPath, ["--config", odd])
        #expect(unknown.status != 0 && unknown.stderr.contains("role 'archiver' is not one of bookie, metadata, proxy"))
        let mismatch = try await runTool(dlogdPath, ["bookie", "--config", config])
        #expect(mismatch.status != 0 && mismatch.stderr.contains("is the metadata role's config (role = metadata), not the bookie role's"),
                "\(mismatch.stderr)")
    }

    @Test func theGeneratorWritesADropInPerConfig() async throws {
        // Proves `dlogd systemd-generator` (run by systemd at boot and daemon-reload) writes, for each config,
        // RequiresMountsFor= and ReadWritePaths= naming exactly its absolute data directories, escapes '%',
        // skips relative paths and roles without directories, and survives a file it cannot parse.
        let dir = TempDir("dlog-generator")
        let etc = dir.sub("etc"), out = dir.sub("out")
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        try "role = bookie\njournal_dirs = /srv/journal, /srv/journal2\nledger_dirs = /data/ledgers%1, relative/dir # note\n"
            .write(toFile: etc + "/bookie.conf", atomically: true, encoding: .utf8)
        try "role = metadata\ndata_dir = /var/lib/dlog/meta\n".write(toFile: etc + "/meta.conf", atomically: true, encoding: .utf8)
        try "role = proxy\nport = 3190\n".write(toFile: etc + "/proxy.conf", atomically: true, encoding: .utf8)
        try "this is not a config\n".write(toFile: etc + "/junk.conf", atomically: true, encoding: .utf8)
        let run = try await runTool(dlogdPath, ["systemd-generator", "--config-dir", etc, out, out + "-early", out + "-late"])
        #expect(run.status == 0, "\(run.stderr)")
        let bookie = try String(contentsOfFile: out + "/dlogd@bookie.service.d/50-dlog-directories.conf", encoding: .utf8)
        #expect(bookie.contains("RequiresMountsFor=/srv/journal /srv/journal2 /data/ledgers%%1\n"), "\(bookie)")
        #expect(bookie.contains("ReadWritePaths=-/srv/journal -/srv/journal2 -/data/ledgers%%1\n"), "\(bookie)")
        #expect(!bookie.contains("relative"))
        let meta = try String(contentsOfFile: out + "/dlogd@meta.service.d/50-dlog-directories.conf", encoding: .utf8)
        #expect(meta.contains("RequiresMountsFor=/var/lib/dlog/meta\n"), "\(meta)")
        let made = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        #expect(made == ["dlogd@bookie.service.d", "dlogd@meta.service.d"], "\(made)")
    }
}
