import DLogLedger
import DLogTestSupport
import DLogWire
import Foundation
import Testing

@Suite(.serialized) struct BenchAckedLogTests {
    @Test func theBookieCommandsAckedLogSurvivesTheBookiesDeath() async throws {
        // Proves `dlog-bench bookie --acked-log` writes acknowledged entries as they arrive: SIGKILL of the
        // bookie mid-run leaves a log of them (before, lines were written only after a final GET_INFO, which a
        // dead bookie never answers), and after a restart every logged entry reads back with the logged CRC.
        let dir = TempDir()
        let conf = dir.sub("bookie.conf")
        try """
            journal_dirs = \(dir.sub("journal"))
            ledger_dirs = \(dir.sub("ledgers"))
            journal_file_bytes = 8M
            journal_files_max = 3
            max_frame_bytes = 1M
            allow_shared_device = true
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        var bookie = try await DaemonProcess.start(["--config", conf])
        let log = dir.sub("acked.log")
        let bench = try ToolRun(dlogBenchPath, ["bookie", "--target", "127.0.0.1:\(bookie.port)", "--op", "add",
                                                "--clients", "2", "--pipeline", "4", "--size", "100",
                                                "--duration", "20", "--acked-log", log])
        try await eventually("adds acknowledged and logged", seconds: 20) {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").count >= 200
        }
        bookie.kill(SIGKILL)
        _ = await bookie.exited()
        #expect(await bench.exited() != 0, "the run fails when its bookie dies")
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 200)

        bookie = try await DaemonProcess.start(["--config", conf])
        defer { bookie.kill(SIGKILL) }
        let client = try await bookie.client()
        for line in lines {
            let fields = line.split(separator: " ")
            let (ledger, entry, crc) = (UInt64(fields[0])!, Int64(fields[1])!, UInt32(fields[2])!)
            guard case .entry(let bytes) = try await client.send(.read(ledger: LedgerID(ledger), entry: EntryID(entry), fenceWith: nil)) else {
                Issue.record("acknowledged \(ledger)/\(entry) is not there")
                continue
            }
            #expect(bytes.withUnsafeBytes { $0.loadBigEndian(UInt32.self, at: 32) } == crc)
        }
        await client.close()
    }
}
