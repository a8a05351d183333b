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
        var outcome: Result<Int, BenchError>
        do {
            outcome = try await check(pool)
        } catch {
            outcome = .failure(BenchError("\(error)"))
        }
        await pool.shutdown()
        await store.shutdown()
        switch outcome {
        case .failure(let bad):
            print("BAD \(bad)")
            throw ExitCode(1)
        case .success(let beyond):
            print("verified \(count) confirmed entries over \(acks.count) ledgers: all present and intact; "
                  + "\(beyond) more entries recovered past the last logged confirmation, all intact, no hole")
        }
    }

    /// Recovers each ledger, then reads every entry from 0 to its last (not only the logged ones: a hole or a
    /// damaged entry anywhere is a failure) and compares the logged ones' CRCs. Returns how many entries were
    /// recovered past each ledger's last logged confirmation (durable, but the writer never said so).
    private func check(_ pool: BookiePool) async throws -> Result<Int, BenchError> {
        var beyond = 0
        for ledger in acks.keys.sorted() {
            let closed = try await LedgerRecovery(pool: pool).recover(ledger, password: "dlog-bench")
            let expected = Dictionary(acks[ledger]!.map { ($0.entry.rawValue, $0.crc) }, uniquingKeysWith: { a, _ in a })
            if let last = expected.keys.max(), last > closed.lastEntry.rawValue {
                return .failure(BenchError("\(ledger)/\(last): confirmed, but recovery closed the ledger at \(closed.lastEntry)"))
            }
            let reader = try await LedgerReader.open(ledger, password: "dlog-bench", pool: pool)
            if let bad = await firstBadEntry(reader, through: closed.lastEntry.rawValue, expected: expected) {
                return .failure(BenchError(bad))
            }
            beyond += Int(closed.lastEntry.rawValue - (expected.keys.max() ?? -1))
        }
        return .success(beyond)
    }

    /// Reads entries 0...last, 64 at a time; the first that cannot be read intact or has the wrong CRC.
    private func firstBadEntry(_ reader: LedgerReader, through last: Int64, expected: [Int64: UInt32]) async -> String? {
        var next: Int64 = 0
        while next <= last {
            let window = next...min(last, next + 63)
            next = window.upperBound + 1
            let failures = await withTaskGroup(of: (Int64, String)?.self) { group in
                for entry in window {
                    group.addTask {
                        let payload: [UInt8]
                        do {
                            payload = try await reader.read(EntryID(entry))
                        } catch {
                            return (entry, "\(reader.id)/\(entry): \(error)")
                        }
                        let crc = CRC32C.checksum(payload)
                        if let want = expected[entry], crc != want {
                            return (entry, "\(reader.id)/\(entry): payload crc \(String(crc, radix: 16)), confirmed with \(String(want, radix: 16))")
                        }
                        return nil
                    }
                }
                return await group.reduce(into: [(Int64, String)]()) { all, failure in
                    if let failure { all.append(failure) }
                }
            }
            if let first = failures.min(by: { $0.0 < $1.0 }) { return first.1 }
        }
        return nil
    }
}
