import ArgumentParser
import DLogLedger
import DLogMetadata
import DLogWire

/// `dlog-bench verify --metadata URI --acked-log FILE` for a log of `dlog-bench ledger`: every ledger is opened
/// with recovery when still open (which closes it), and every confirmed entry must be there, within the
/// ledger's end, with its payload's CRC32C.
struct LedgerVerification {
    struct Ack {
        var entry: EntryID
        var crc: UInt32
    }

    let logPath: String
    let acks: [LedgerID: [Ack]]
    let count: Int

    /// Parses `L<ledger> <entry> <crc as 8 hex digits>` lines; a malformed one is named by file and line.
    init(logPath: String, text: String) throws {
        var acks: [LedgerID: [Ack]] = [:]
        var count = 0
        for (n, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: " ")
            guard f.count == 3, f[0].first == "L", let ledger = UInt64(f[0].dropFirst()), let entry = Int64(f[1]),
                  entry >= 0, f[2].count == 8, let crc = UInt32(f[2], radix: 16) else {
                throw BenchError("\(logPath):\(n + 1): expected 'L<ledger> <entry> <crc>', found '\(line)'")
            }
            acks[LedgerID(ledger), default: []].append(Ack(entry: EntryID(entry), crc: crc))
            count += 1
        }
        self.logPath = logPath
        self.acks = acks
        self.count = count
    }

    func run(metadata: String) async throws {
        let store = try MetadataURI.connect(metadata)
        let pool = BookiePool(cluster: Cluster(store: store))
        var bad: String?
        do {
            bad = try await firstFailure(pool)
        } catch {
            bad = "\(error)"
        }
        await pool.shutdown()
        await store.shutdown()
        if let bad {
            print("BAD \(bad)")
            throw ExitCode(1)
        }
        print("verified \(count) confirmed entries over \(acks.count) ledgers: all present and intact")
    }

    private func firstFailure(_ pool: BookiePool) async throws -> String? {
        for ledger in acks.keys.sorted() {
            let closed = try await LedgerRecovery(pool: pool).recover(ledger, password: "dlog-bench")
            let reader = try await LedgerReader.open(ledger, password: "dlog-bench", pool: pool)
            for ack in acks[ledger]!.sorted(by: { $0.entry < $1.entry }) {
                guard ack.entry <= closed.lastEntry else {
                    return "\(ledger)/\(ack.entry): confirmed, but the ledger ends at \(closed.lastEntry)"
                }
                let payload: [UInt8]
                do {
                    payload = try await reader.read(ack.entry)
                } catch {
                    return "\(ledger)/\(ack.entry): \(error)"
                }
                let crc = CRC32C.checksum(payload)
                guard crc == ack.crc else {
                    return "\(ledger)/\(ack.entry): payload crc \(String(crc, radix: 16)), confirmed with \(String(ack.crc, radix: 16))"
                }
            }
        }
        return nil
    }
}
