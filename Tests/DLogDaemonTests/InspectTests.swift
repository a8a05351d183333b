import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// `dlogctl inspect` on a real bookie's files after it was killed: what an operator looks at when a bookie
/// will not start, or to see what a disk holds.
@Suite(.serialized) struct InspectTests {
    static func json(_ run: (status: Int32, stdout: String, stderr: String)) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run)")
    }

    @Test func aStoppedBookiesFilesAreDescribedAndTheirDamageFound() async throws {
        // Proves each view reads a killed bookie's files as written (checkpointed entries in the index and the
        // entry log, later ones in the journal only), finds a flipped bit in an entry (with its offset) and in a
        // synced journal batch, exits 1 on damage, and answers bad paths with a message and exit 2.
        let dir = TempDir("dlog-inspect")
        let socket = dir.sub("bookie.sock")
        let config = dir.sub("bookie.conf")
        // Only the checkpoint asked for below: a periodic one on a slow machine would split the entries over
        // several entry logs, which the views below count in one.
        try (smallBookieConfig(under: dir) + "admin_socket = \(socket)\ncheckpoint_interval_ms = 3600000\n")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let bookie = try await DaemonProcess.start(["--config", config])
        defer { bookie.kill(SIGKILL) }
        let client = try await bookie.client()
        for e: Int64 in 0..<20 { _ = try await client.send(.add(masterKey: testKey, entry: entry(7, e), recovery: false)) }
        for e: Int64 in 0..<5 { _ = try await client.send(.add(masterKey: testKey, entry: entry(8, e), recovery: false)) }
        let ledgers = dir.sub("b/ledgers"), journal = dir.sub("b/journal"), entryLog = dir.sub("b/ledgers/entrylog-1.log")
        _ = try await runTool(dlogctlPath, ["admin", "--socket", socket, "checkpoint"])
        // The checkpoint is done once the index lists both ledgers (it is written after the entry log).
        for _ in 0..<100 {
            let view = try await runTool(dlogctlPath, ["inspect", "manifest", ledgers, "--json"])
            if view.status == 0, (try? Self.json(view))?["ledgerCount"] as? Int == 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        // After the checkpoint: in the journal only.
        for e: Int64 in 20..<23 { _ = try await client.send(.add(masterKey: testKey, entry: entry(7, e), recovery: false)) }
        await client.close()
        bookie.kill(SIGKILL)
        _ = await bookie.exited()

        let journalView = try Self.json(try await runTool(dlogctlPath, ["inspect", "journal", journal, "--json"]))
        let files = try #require(journalView["files"] as? [[String: Any]])
        let used = files.filter { $0["fileNumber"] != nil }
        let kinds = used.compactMap { $0["kinds"] as? [String: Int] }
        #expect(kinds.reduce(0) { $0 + ($1["add"] ?? 0) } == 28 && kinds.reduce(0) { $0 + ($1["master_key"] ?? 0) } == 2, "\(files)")
        #expect(used.allSatisfy { $0["damaged"] as? Bool == false && ($0["batches"] as? Int ?? 0) > 0 }, "\(files)")
        let table = try await runTool(dlogctlPath, ["inspect", "journal", journal])
        #expect(table.status == 0 && table.stdout.contains("journal-0000.dlj") && table.stdout.contains("writing stopped at offset"), "\(table)")
        // A torn tail: a write cut short where writing stopped leaves bytes that make no batch. Nothing from there was
        // acknowledged, so the view names it and it is not damage (exit 0).
        let stopped = try #require(table.stdout.range(of: "writing stopped at offset "))
        let tail = try #require(Int(table.stdout[stopped.upperBound...].prefix { $0.isNumber }))
        let firstFile = journal + "/journal-0000.dlj"
        var torn = [UInt8](try Data(contentsOf: URL(fileURLWithPath: firstFile)))
        for i in tail..<(tail + 700) { torn[i] = 0x5A }
        try Data(torn).write(to: URL(fileURLWithPath: firstFile))
        let tornView = try await runTool(dlogctlPath, ["inspect", "journal", journal])
        #expect(tornView.status == 0 && tornView.stdout.contains("torn or stale tail at offset \(tail)"), "\(tornView)")

        let index = try Self.json(try await runTool(dlogctlPath, ["inspect", "manifest", ledgers, "--json"]))
        let states = try #require(index["ledgers"] as? [[String: Any]])
        #expect(states.map { $0["ledger"] as? Int } == [7, 8] && states.first?["lastEntry"] as? Int == 19, "\(index)")
        #expect((index["journalMarks"] as? [String])?.first?.hasPrefix("file ") == true, "\(index)")

        let log = try Self.json(try await runTool(dlogctlPath, ["inspect", "entrylog", entryLog, "--json"]))
        #expect(log["entries"] as? Int == 25 && (log["damaged"] as? [Any])?.isEmpty == true, "\(log)")
        let ledger = try await runTool(dlogctlPath, ["inspect", "ledger", ledgers, "7"])
        #expect(ledger.status == 0 && ledger.stdout.contains("ledger 7: last entry 19") && ledger.stdout.contains("entrylog-1.log  20"),
                "\(ledger)")
        // The id may come first too; without one, the usage error says what is missing.
        #expect(try await runTool(dlogctlPath, ["inspect", "ledger", "7", ledgers]).stdout == ledger.stdout)
        let noID = try await runTool(dlogctlPath, ["inspect", "ledger", ledgers])
        #expect(noID.status != 0 && noID.stderr.contains("the ledger's id (a number)"), "\(noID)")

        // A flipped bit in ledger 7's entry 5: found, with its offset, by both views that read entries.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: entryLog)))
        var key: [UInt8] = []
        key.appendBigEndian(UInt64(7))
        key.appendBigEndian(UInt64(5))
        let at = try #require(bytes.indices.first { bytes[$0..<min($0 + 16, bytes.count)].elementsEqual(key) })
        bytes[at + EntryHeader.byteCount + 9] ^= 0x04
        try Data(bytes).write(to: URL(fileURLWithPath: entryLog))
        let damagedLog = try await runTool(dlogctlPath, ["inspect", "entrylog", entryLog])
        #expect(damagedLog.status == 1 && damagedLog.stdout.contains("damaged: ledger 7 entry 5 at offset"), "\(damagedLog)")
        let damagedLedger = try await runTool(dlogctlPath, ["inspect", "ledger", "7", ledgers, "--json"])
        let damagedView = try Self.json(damagedLedger)
        #expect(damagedLedger.status == 1 && damagedView["damaged"] as? Int == 1, "\(damagedLedger)")

        // A flipped bit in the first batch of the journal, which later batches show had been synced.
        let journalFile = journal + "/journal-0000.dlj"
        var journalBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: journalFile)))
        journalBytes[4096 + 20 + 16 + 40] ^= 0x01
        try Data(journalBytes).write(to: URL(fileURLWithPath: journalFile))
        let damagedJournal = try await runTool(dlogctlPath, ["inspect", "journal", journal])
        #expect(damagedJournal.status == 1 && damagedJournal.stdout.contains("damaged at offset 4096"), "\(damagedJournal)")

        // Wrong paths: one line naming what is wrong, exit 2.
        let missing = try await runTool(dlogctlPath, ["inspect", "journal", dir.sub("nope")])
        #expect(missing.status == 2 && missing.stderr.contains("\(dir.sub("nope")) does not exist"), "\(missing)")
        let notJournal = try await runTool(dlogctlPath, ["inspect", "journal", ledgers])
        #expect(notJournal.status == 2 && notJournal.stderr.contains("holds no journal file"), "\(notJournal)")
        let notLog = try await runTool(dlogctlPath, ["inspect", "entrylog", config])
        #expect(notLog.status == 2 && notLog.stderr.contains("is not an entry log"), "\(notLog)")
        let notIndex = try await runTool(dlogctlPath, ["inspect", "manifest", journal])
        #expect(notIndex.status == 2 && notIndex.stderr.contains("no ledger index in"), "\(notIndex)")
    }
}
