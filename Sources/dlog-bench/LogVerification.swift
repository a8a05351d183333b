import ArgumentParser
import DistributedLog
import DLogLedger
import DLogMetadata
import DLogWire

/// `dlog-bench verify --metadata URI --acked-log FILE` for a log of `dlog-bench log`: every stream is read from
/// its start, and every acknowledged record must be delivered exactly once, at its DLSN, with its payload's
/// CRC32C, and every record in DLSN order.
struct LogVerification {
    let logPath: String
    let acks: [String: [DLSN: UInt32]]
    let count: Int

    /// Parses `S<stream> <segment/entry/slot> <crc as 8 hex digits>` lines; a malformed one is named by line.
    init(logPath: String, text: String) throws {
        var acks: [String: [DLSN: UInt32]] = [:]
        var count = 0
        for (n, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: " ")
            guard f.count == 3, f[0].first == "S", let dlsn = DLSN(parsing: String(f[1])), f[2].count == 8,
                  let crc = UInt32(f[2], radix: 16) else {
                throw BenchError("\(logPath):\(n + 1): expected 'S<stream> <segment/entry/slot> <crc>', found '\(line)'")
            }
            let stream = String(f[0].dropFirst())
            // Two acknowledgements of one position: two writers were told they own the same record.
            if acks[stream]?[dlsn] != nil {
                throw BenchError("\(logPath):\(n + 1): \(stream) \(dlsn) was acknowledged twice")
            }
            acks[stream, default: [:]][dlsn] = crc
            count += 1
        }
        self.logPath = logPath
        self.acks = acks
        self.count = count
    }

    func run(metadata: String) async throws {
        let store = try MetadataURI.connect(metadata)
        let namespace = Namespace(pool: BookiePool(cluster: Cluster(store: store)))
        var bad: String?
        var extra = 0
        do {
            for stream in acks.keys.sorted() {
                let (problem, unacknowledged) = try await check(stream, namespace)
                extra += unacknowledged
                if let problem { bad = problem; break }
            }
        } catch {
            bad = "\(error)"
        }
        await namespace.pool.shutdown()
        await store.shutdown()
        if let bad {
            print("BAD \(bad)")
            throw ExitCode(1)
        }
        print("verified \(count) acknowledged records over \(acks.count) streams: each read once, in order, at its DLSN, "
              + "intact; \(extra) more records not acknowledged to the writer (retried or in flight at a failure)")
    }

    /// Reads `stream` from its start until every acknowledged DLSN was delivered (at most 60 s without progress).
    private func check(_ stream: String, _ namespace: Namespace) async throws -> (String?, Int) {
        let expected = acks[stream]!
        let last = expected.keys.max()!
        let reader = try await namespace.openReader(stream)
        var previous: DLSN?
        var delivered: Set<DLSN> = []
        var extra = 0
        var quietSince = ContinuousClock.now
        while previous.map({ $0 < last }) ?? true {
            let batch = try await reader.readBulk(max: 1000, wait: .milliseconds(500))
            if batch.isEmpty {
                if ContinuousClock.now - quietSince > .seconds(60) {
                    return ("\(stream): nothing after \(previous.map { "\($0)" } ?? "the start") for 60 s; \(last) was acknowledged", extra)
                }
                continue
            }
            quietSince = .now
            for record in batch {
                if let previous, record.dlsn <= previous {
                    return ("\(stream): \(record.dlsn) delivered after \(previous) (twice or out of order)", extra)
                }
                previous = record.dlsn
                guard let crc = expected[record.dlsn] else { extra += 1; continue }
                let actual = CRC32C.checksum(record.payload)
                guard actual == crc else {
                    return ("\(stream) \(record.dlsn): payload crc \(String(actual, radix: 16)), acknowledged with \(String(crc, radix: 16))", extra)
                }
                delivered.insert(record.dlsn)
            }
        }
        if let missing = expected.keys.sorted().first(where: { !delivered.contains($0) }) {
            return ("\(stream): \(missing) was acknowledged but not delivered (\(expected.count - delivered.count) such records)", extra)
        }
        return (nil, extra)
    }
}
