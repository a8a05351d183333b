import ArgumentParser
import DLogMetadata
import Foundation
import Histogram

/// Closed-loop compare-and-set updates on many keys of a metadata store, either backend: N clients, each its own
/// connection with one update in flight, each picking a random key and updating it from the version it last saw.
struct MetadataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metadata",
        abstract: "Compare-and-set updates on many keys of a metadata store; prints throughput, conflicts and latency.",
        discussion: """
            Keys are created first under /bench/<run-id>/ (a random run id, so runs never collide) and are left \
            in place afterwards, so `dlog-bench verify --metadata URI --acked-log FILE` can check them.
            """)

    @Option(help: "Metadata store: dlog://HOST:PORT or etcd://HOST:PORT[/prefix].") var target: String
    @Option(help: "Clients, each its own connection with one update in flight.") var clients = 16
    @Option(help: "Seconds to run.") var duration = 10.0
    @Option(help: "Keys to update, created before the run.") var keys = 1000
    @Option(name: .customLong("value-size"), help: "Bytes per value.") var valueSize = 128
    @Flag(help: "Print one JSON object.") var json = false
    @Option(name: .customLong("acked-log"), help: "Append every acknowledged (key, version, value CRC32C) to this file.")
    var ackedLog: String?

    /// Any one request waits at most this long, so a run ends at most this long after --duration.
    static let requestTimeout = Duration.seconds(5)
    static let histogramMicrosMax: UInt64 = 60_000_000

    struct Result: Codable {
        var backend: String
        var target: String
        var run_id: String
        var clients: Int
        var keys: Int
        var value_size: Int
        var duration_s: Double
        var ops: Int
        var ops_per_s: Double
        var conflicts: Int
        var conflicts_per_s: Double
        var errors: Int
        var errors_by_kind: [String: Int]
        /// Of acknowledged updates only; a conflict is an answer but not an update.
        var latency: LatencySummary
    }

    func validate() throws {
        do {
            _ = try MetadataURI(parsing: target)
        } catch {
            throw ValidationError("--target: \(error)")
        }
        guard (1...1024).contains(clients) else { throw ValidationError("--clients must be 1...1024") }
        guard duration > 0 && duration <= 3600 else { throw ValidationError("--duration must be 0...3600 seconds") }
        // Six digits in every key name.
        guard (1...1_000_000).contains(keys) else { throw ValidationError("--keys must be 1...1000000") }
        // Room for the stamp that makes every value distinct (so its CRC names it), up to the store's limit.
        guard (MetadataValues.stampBytes...MetadataLimits.valueBytesMax).contains(valueSize) else {
            throw ValidationError("--value-size must be \(MetadataValues.stampBytes)...\(MetadataLimits.valueBytesMax)")
        }
    }

    func run() async throws {
        let uri = try MetadataURI(parsing: target)  // checked in validate()
        let runID = String(format: "%08x", UInt32.random(in: .min ... .max))
        let keyNames = (0..<keys).map { String(format: "/bench/\(runID)/k%06d", $0) }
        let writer = try ackedLog.map { try MetadataAckedLogWriter(path: $0) }
        // One connect per client: each is its own client object with its own connection(s), made on first use.
        let stores = try (0..<clients).map { _ in try uri.connect(requestTimeout: Self.requestTimeout) }
        let outcome: Swift.Result<(results: [MetadataClientResult], elapsed: Double), any Error>
        do {
            let initial = try await Self.createKeys(keyNames, stores: stores, valueSize: valueSize, writer: writer)
            outcome = .success(try await measure(keyNames, initial: initial, stores: stores, writer: writer))
        } catch {
            outcome = .failure(error)
        }
        for store in stores { await store.shutdown() }
        try writer?.close()
        let (results, elapsed) = try outcome.get()
        try report(merge(results, elapsed: elapsed, backend: uri.backend, runID: runID), results: results)
    }

    /// Creates every key before the clock starts, spread over the clients; returns each key's first version.
    static func createKeys(_ keys: [String], stores: [any MetadataStore], valueSize: Int,
                           writer: MetadataAckedLogWriter?) async throws -> [Version] {
        try await withThrowingTaskGroup(of: [(Int, Version)].self) { group in
            for (lane, store) in stores.enumerated() {
                group.addTask {
                    // Lanes counted down from the top, so setup values never share a stamp with the run's.
                    var values = MetadataValues(size: valueSize, lane: UInt64.max - UInt64(lane))
                    var acked = MetadataAckedLogBuffer(writer: writer)
                    return try await createShare(of: keys, lane: lane, lanes: stores.count, store: store,
                                                 values: &values, acked: &acked)
                }
            }
            var versions = [Version](repeating: .absent, count: keys.count)
            for try await created in group {
                for (index, version) in created { versions[index] = version }
            }
            precondition(!versions.contains(.absent), "every key was created")
            return versions
        }
    }

    /// Creates keys `lane`, `lane + lanes`, ... one at a time; logs each create, even when a later one fails.
    static func createShare(of keys: [String], lane: Int, lanes: Int, store: any MetadataStore,
                            values: inout MetadataValues, acked: inout MetadataAckedLogBuffer) async throws -> [(Int, Version)] {
        var created: [(Int, Version)] = []
        for index in stride(from: lane, to: keys.count, by: lanes) {
            let value = values.next()
            let version: Version
            do {
                version = try await store.create(keys[index], value: value)
            } catch {
                try acked.flush()
                throw BenchError("setting up: creating \(keys[index]) failed: \(error)")
            }
            created.append((index, version))
            try acked.record(MetadataAck(key: keys[index], version: version, value: value))
        }
        try acked.flush()
        return created
    }

    /// Runs every client until the deadline; returns their results and the seconds it took.
    func measure(_ keys: [String], initial: [Version], stores: [any MetadataStore],
                 writer: MetadataAckedLogWriter?) async throws -> (results: [MetadataClientResult], elapsed: Double) {
        let valueSize = self.valueSize
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(duration * 1000))
        let results = try await withThrowingTaskGroup(of: MetadataClientResult.self) { group in
            for (lane, store) in stores.enumerated() {
                group.addTask {
                    var client = MetadataCASClient(store: store, keys: keys, versions: initial,
                                                   values: MetadataValues(size: valueSize, lane: UInt64(lane)),
                                                   acked: MetadataAckedLogBuffer(writer: writer))
                    return try await client.run(until: deadline)
                }
            }
            var results: [MetadataClientResult] = []
            for try await result in group { results.append(result) }
            return results
        }
        return (results, Double(micros(ContinuousClock.now - start)) / 1e6)
    }

    func merge(_ results: [MetadataClientResult], elapsed: Double, backend: MetadataURI.Backend,
               runID: String) -> Result {
        var histogram = Histogram<UInt64>(highestTrackableValue: Self.histogramMicrosMax)
        var ops = 0, conflicts = 0
        var errorsByKind: [String: Int] = [:]
        for result in results {
            histogram.add(result.histogram)
            ops += result.ops
            conflicts += result.conflicts
            errorsByKind.merge(result.errorsByKind, uniquingKeysWith: +)
        }
        return Result(backend: backend.rawValue, target: target, run_id: runID, clients: clients, keys: keys,
                      value_size: valueSize, duration_s: (elapsed * 1000).rounded() / 1000, ops: ops,
                      ops_per_s: (Double(ops) / elapsed).rounded(), conflicts: conflicts,
                      conflicts_per_s: (Double(conflicts) / elapsed).rounded(),
                      errors: errorsByKind.values.reduce(0, +), errors_by_kind: errorsByKind,
                      latency: LatencySummary(histogram))
    }

    /// Prints the result; exits 1 when any update failed, as `bookie` does.
    func report(_ result: Result, results: [MetadataClientResult]) throws {
        let lat = result.latency
        if json {
            printJSON(result)
        } else {
            print("metadata \(target) (\(result.backend), run \(result.run_id)) \(clients) clients, \(keys) keys, "
                  + "\(valueSize) B: \(fmt(result.ops_per_s, 0)) updates/s, \(fmt(result.conflicts_per_s, 0)) conflicts/s, "
                  + "p50 \(fmt(lat.p50_ms, 3)) ms, p99 \(fmt(lat.p99_ms, 3)) ms, p99.9 \(fmt(lat.p999_ms, 3)) ms, "
                  + "max \(fmt(lat.max_ms, 3)) ms; \(result.errors) errors")
        }
        guard result.errors > 0 else { return }
        let kinds = result.errors_by_kind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let first = results.lazy.compactMap(\.firstError).first ?? "?"
        FileHandle.standardError.write(Data("dlog-bench: \(result.errors) updates failed (\(kinds)); first: \(first)\n".utf8))
        throw ExitCode(1)
    }
}

/// What one client measured.
struct MetadataClientResult: Sendable {
    var histogram = Histogram<UInt64>(highestTrackableValue: MetadataCommand.histogramMicrosMax)
    var ops = 0
    var conflicts = 0
    var errorsByKind: [String: Int] = [:]
    var firstError: String?

    mutating func recordError(_ error: any Error, key: String, kind: String? = nil) {
        errorsByKind[kind ?? Self.kind(of: error), default: 0] += 1
        if firstError == nil { firstError = "\(key): \(error)" }
    }

    /// The error's case name, for counting by kind.
    static func kind(of error: any Error) -> String {
        guard let error = error as? MetadataError else { return "other" }
        switch error {
        case .versionConflict: return "versionConflict"
        case .keyExists: return "keyExists"
        case .noSuchKey: return "noSuchKey"
        case .leaseExpired: return "leaseExpired"
        case .unavailable: return "unavailable"
        case .compacted: return "compacted"
        case .tooLarge: return "tooLarge"
        case .invalidArgument: return "invalidArgument"
        case .internalError: return "internalError"
        case .permissionDenied: return "permissionDenied"
        }
    }
}

/// One client's loop: a random key, a compare-and-set from the version this client last saw for it (retried from
/// the actual version when it lost a race), repeat.
struct MetadataCASClient {
    enum Outcome {
        case acknowledged(Version, latencyMicros: UInt64)
        case conflict(actual: Version)
        case failed(any Error)
    }

    /// After a failure the client waits this long, so a store that is down is not spun against.
    static let pauseAfterError = Duration.milliseconds(20)
    static let conflictRetriesMax = 8

    let store: any MetadataStore
    let keys: [String]
    /// The version this client last saw per key; a conflict's answer corrects it.
    var versions: [Version]
    var values: MetadataValues
    var acked: MetadataAckedLogBuffer
    var result = MetadataClientResult()

    mutating func run(until deadline: ContinuousClock.Instant) async throws -> MetadataClientResult {
        precondition(versions.count == keys.count && !keys.isEmpty)
        var random = SystemRandomNumberGenerator()
        // A lost compare-and-set is retried on the same key from the version the conflict reported, as a
        // read-modify-write caller would (a bounded number of times); then the client moves to another key.
        var retry: (index: Int, attempts: Int)?
        while ContinuousClock.now < deadline {
            let index = retry?.index ?? Int.random(in: 0..<keys.count, using: &random)
            let value = values.next()
            switch await attempt(keys[index], value: value, ifVersion: versions[index]) {
            case .acknowledged(let version, let latency):
                // A store that answers a successful compare-and-set with an older version is broken: say so.
                if version <= versions[index] {
                    result.recordError(BenchError("acknowledged at version \(version), not after \(versions[index])"),
                                       key: keys[index], kind: "versionNotNewer")
                }
                versions[index] = version
                retry = nil
                result.ops += 1
                _ = result.histogram.record(latency)
                try acked.record(MetadataAck(key: keys[index], version: version, value: value))
            case .conflict(let actual):
                versions[index] = actual
                result.conflicts += 1
                let attempts = (retry?.attempts ?? 0) + 1
                retry = attempts < Self.conflictRetriesMax ? (index, attempts) : nil
            case .failed(let error):
                retry = nil
                result.recordError(error, key: keys[index])
                try? await Task.sleep(for: Self.pauseAfterError)
            }
        }
        try acked.flush()
        return result
    }

    /// One compare-and-set. Only `unavailable` leaves the outcome unknown; it is not acknowledged, so not logged,
    /// and the next update of the key learns the truth from its conflict.
    func attempt(_ key: String, value: [UInt8], ifVersion version: Version) async -> Outcome {
        let sent = ContinuousClock.now
        do {
            let new = try await store.put(key, value: value, ifVersion: version)
            return .acknowledged(new, latencyMicros: micros(ContinuousClock.now - sent))
        } catch MetadataError.versionConflict(_, _, let actual) {
            return .conflict(actual: actual)
        } catch {
            return .failed(error)
        }
    }
}

/// Values of a fixed size, each distinct: the first 16 bytes stamp the writer's lane and a sequence number, so
/// each acknowledged value has its own CRC; the rest is fixed filler.
struct MetadataValues {
    static let stampBytes = 16
    private var bytes: [UInt8]
    private let lane: UInt64
    private var sequence: UInt64 = 0

    init(size: Int, lane: UInt64) {
        precondition(size >= Self.stampBytes)
        bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
        self.lane = lane
    }

    mutating func next() -> [UInt8] {
        sequence += 1
        withUnsafeBytes(of: lane.bigEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: sequence.bigEndian) { bytes.replaceSubrange(8..<16, with: $0) }
        return bytes
    }
}
