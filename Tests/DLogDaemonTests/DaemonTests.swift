import DLogTestSupport
import DLogLedger
import DLogWire
import Foundation
import Testing

@Suite(.serialized) struct DaemonTests {
    /// A bad config value stops the daemon with a message naming the key, value and what is allowed.
    @Test func badConfigIsRefusedByName() async throws {
        let dir = TempDir()
        let conf = dir.sub("bookie.conf")
        try "journal_engine = turbo\n".write(toFile: conf, atomically: true, encoding: .utf8)
        let d = try DaemonProcess(["--config", conf])
        #expect(await d.exited() != 0)
        #expect(d.stderr.contains("journal_engine"))
        #expect(d.stderr.contains("turbo"))
        #expect(d.stderr.contains("auto, io_uring, libaio, blocking"))
    }

    /// Swapped, foreign or new directories are refused with a message naming the directory; the original
    /// layout starts again. Sharing a device draws a warning.
    @Test func cookiesGuardDirectories() async throws {
        let dir = TempDir()
        let j = dir.sub("journal"), l = dir.sub("ledgers")
        var d = try await DaemonProcess.start(["--journal-dir", j, "--ledger-dir", l])
        #expect(d.stderr.contains("same device"))
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)

        d = try DaemonProcess(["--journal-dir", l, "--ledger-dir", j])
        #expect(await d.exited() == 2)
        #expect(d.stderr.contains("swapped"))

        let fresh = dir.sub("new-ledgers")
        d = try DaemonProcess(["--journal-dir", j, "--ledger-dir", fresh])
        #expect(await d.exited() == 2)
        #expect(d.stderr.contains(fresh))

        let other = TempDir()
        d = try await DaemonProcess.start(["--journal-dir", other.sub("j"), "--ledger-dir", other.sub("l")])
        d.kill(SIGTERM)
        _ = await d.exited()
        d = try DaemonProcess(["--journal-dir", j, "--ledger-dir", other.sub("l")])
        #expect(await d.exited() == 2)
        #expect(d.stderr.contains("another bookie"))

        d = try await DaemonProcess.start(["--journal-dir", j, "--ledger-dir", l])
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)
    }

    /// A bookie started without `metadata` says at warning level that it runs outside any cluster (a service
    /// started from a config lacking the key once served nobody without a word).
    @Test func aBookieWithoutMetadataWarnsItIsOutsideAnyCluster() async throws {
        let dir = TempDir()
        let d = try await DaemonProcess.start(["--journal-dir", dir.sub("j"), "--ledger-dir", dir.sub("l")])
        let deadline = ContinuousClock.now + .seconds(10)
        while !d.stderr.contains("running outside any cluster") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let line = d.stderr.split(separator: "\n").first { $0.contains("running outside any cluster: no metadata configured") }
        #expect(line?.hasPrefix("<4>") == true, "a warning-level line: \(d.stderr)")
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)
    }
}

@Suite(.serialized) struct CorruptJournalDaemonTests {
    /// A journal damaged before its tail stops dlogd with the file and offset; with --journal-truncate-corrupt it
    /// starts, keeping every entry before the damage; later starts repeat that decision without the flag.
    @Test func refusesThenTruncatesOnOperatorRequest() async throws {
        let dir = TempDir()
        // No checkpoint during the test (a slow, loaded machine could take 10 s over the adds): one would move the
        // replay start past the damaged batch, and there would be nothing to refuse.
        let conf = dir.sub("bookie.conf")
        try "journal_file_bytes = 8M\njournal_files_max = 3\nmax_frame_bytes = 1M\ncheckpoint_interval_ms = 3600000\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        let args = ["--journal-dir", dir.sub("j"), "--ledger-dir", dir.sub("l"), "--config", conf]
        var d = try await DaemonProcess.start(args)
        var c = try await d.client()
        for e in 0..<40 { try await c.add(key: testKey, entry: entry(3, Int64(e))) }  // one batch each
        await c.close()
        d.kill(SIGKILL)
        _ = await d.exited()

        // Find the journal file holding the adds (the newest header) and damage its 10th batch.
        let journalDir = dir.sub("j")
        let files = try FileManager.default.contentsOfDirectory(atPath: journalDir).filter { $0.hasSuffix(".dlj") }
        let newest = try #require(try files.max { a, b in
            try fileNumber(journalDir + "/" + a) < fileNumber(journalDir + "/" + b)
        })
        let path = journalDir + "/" + newest
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 4096 * 10 + 200)
        let byte = try handle.read(upToCount: 1)!
        try handle.seek(toOffset: 4096 * 10 + 200)
        handle.write(Data([byte[0] ^ 0xFF]))
        try handle.close()

        d = try DaemonProcess(args)
        #expect(await d.exited() == 2)
        #expect(d.stderr.contains(path))
        #expect(d.stderr.contains("offset \(4096 * 10)"))
        #expect(d.stderr.contains("--journal-truncate-corrupt"))

        d = try await DaemonProcess.start(args + ["--journal-truncate-corrupt"])
        c = try await d.client()
        let last = try EntryCodec.validate(try await c.read(ledger: LedgerID(3), entry: .none)).entry.rawValue
        #expect(last >= 0 && last < 39, "the damaged batch and everything after it are cut (last kept: \(last))")
        for e in 0...last { #expect(try await c.read(ledger: LedgerID(3), entry: EntryID(e)) == entry(3, e)) }
        await c.close()
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)

        d = try await DaemonProcess.start(args)  // no flag: the cut holds
        c = try await d.client()
        #expect(try await c.read(ledger: LedgerID(3), entry: .none) == entry(3, last))
        await c.close()
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)
    }

    func fileNumber(_ path: String) throws -> UInt64 {
        let data = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(16)
        guard data.count == 16, data.prefix(4) == Data("DLJN".utf8) else { return 0 }
        return data.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
