import ArgumentParser
import DLogLedger
import DLogWire
import Foundation

/// Reads back every entry an --acked-log names and checks it byte for byte (through its CRC).
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify",
        abstract: "Read back every acknowledged entry in an --acked-log; exit non-zero at the first bad one.")

    @Option(help: "Bookie address HOST:PORT.") var target: String
    @Option(name: .customLong("acked-log"), help: "File written by dlog-bench bookie --acked-log.") var ackedLog: String

    func run() async throws {
        let (host, port) = try parseTarget(target)
        guard let text = try? String(contentsOfFile: ackedLog, encoding: .utf8) else {
            throw ValidationError("cannot read --acked-log \(ackedLog)")
        }
        let client = try await BookieClient.connect(host: host, port: port)
        defer { Task { await client.close() } }
        var checked = 0
        for (n, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: " ")
            guard f.count == 3, let l = UInt64(f[0]), let e = Int64(f[1]), let crc = UInt32(f[2]) else {
                throw BenchError("\(ackedLog):\(n + 1): expected 'ledger entry crc', found '\(line)'")
            }
            let bytes: [UInt8]
            do {
                bytes = try await client.read(ledger: LedgerID(l), entry: EntryID(e))
            } catch {
                print("BAD \(l)/\(e): read failed: \(error)")
                throw ExitCode(1)
            }
            do {
                let header = try EntryCodec.validate(bytes)
                let stored = bytes.withUnsafeBytes { $0.loadBigEndian(UInt32.self, at: 32) }
                guard header.ledger.rawValue == l, header.entry.rawValue == e, stored == crc else {
                    print("BAD \(l)/\(e): bookie returned \(header.ledger)/\(header.entry) crc \(stored), expected crc \(crc)")
                    throw ExitCode(1)
                }
            } catch let error as EntryError {
                print("BAD \(l)/\(e): \(error)")
                throw ExitCode(1)
            }
            checked += 1
        }
        print("verified \(checked) acknowledged entries: all present and intact")
    }
}
