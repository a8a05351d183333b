import Foundation
import Histogram

/// Latencies in microseconds, merged from all clients.
struct LatencySummary: Codable {
    var p50_ms: Double
    var p99_ms: Double
    var p999_ms: Double
    var max_ms: Double

    init(_ h: Histogram<UInt64>) {
        func ms(_ v: UInt64) -> Double { (Double(v) / 1000 * 1000).rounded() / 1000 }
        p50_ms = ms(h.valueAtPercentile(50))
        p99_ms = ms(h.valueAtPercentile(99))
        p999_ms = ms(h.valueAtPercentile(99.9))
        max_ms = ms(h.max)
    }
}

func micros(_ d: Duration) -> UInt64 {
    // `components` divides 128 bits: taken once, not once per field (it is called for every write measured).
    let c = d.components
    return UInt64(max(0, c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000))
}

func printJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    // Unescaped slashes: targets, URIs and directories stay readable; the JSON means the same either way.
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try! encoder.encode(value), as: UTF8.self))
}

func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }

func parseTarget(_ target: String) throws -> (String, Int) {
    guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]) else {
        throw BenchError("--target must be HOST:PORT, got '\(target)'")
    }
    return (String(target[..<colon]), port)
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}


/// Appends `lines` (each without its newline) to the acked log at `path`, creating it, and syncs it: the log
/// is the record of what the system acknowledged, read back later by `verify`.
func appendAckedLines(_ lines: [String], to path: String) throws {
    if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
    guard let handle = FileHandle(forWritingAtPath: path) else { throw BenchError("cannot open --acked-log \(path)") }
    defer { try? handle.close() }
    var text = lines.joined(separator: "\n")
    if !lines.isEmpty { text += "\n" }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(text.utf8))
    try handle.synchronize()
}

/// Throughput of a run: operations per second (whole) and MB/s (one decimal).
func rates(ops: Int, bytesPerOp: Int, seconds: Double) -> (opsPerSec: Double, mbPerSec: Double) {
    ((Double(ops) / seconds).rounded(), (Double(ops * bytesPerOp) / seconds / 1e6 * 10).rounded() / 10)
}

/// What every closed-loop run reports: operations, errors, rates and latencies. It encodes flat into its
/// command's JSON object, next to the command's own parameters (see `RunReport`).
struct RunFigures: Encodable {
    var duration_s: Double
    var ops: Int
    var errors: Int
    var ops_per_sec: Double
    var mb_per_sec: Double
    var p50_ms: Double
    var p99_ms: Double
    var p999_ms: Double
    var max_ms: Double

    init(_ histogram: Histogram<UInt64>, ops: Int, errors: Int, bytesPerOp: Int, seconds: Double) {
        let latency = LatencySummary(histogram)
        let rate = rates(ops: ops, bytesPerOp: bytesPerOp, seconds: seconds)
        (duration_s, self.ops, self.errors, ops_per_sec, mb_per_sec) = (seconds, ops, errors, rate.opsPerSec, rate.mbPerSec)
        (p50_ms, p99_ms, p999_ms, max_ms) = (latency.p50_ms, latency.p99_ms, latency.p999_ms, latency.max_ms)
    }

    /// "N adds/s, M MB/s, p50 … ms, p99 … ms, p99.9 … ms, max … ms", for people.
    func line(_ unit: String) -> String {
        "\(fmt(ops_per_sec, 0)) \(unit)/s, \(fmt(mb_per_sec, 1)) MB/s, p50 \(fmt(p50_ms, 3)) ms, p99 \(fmt(p99_ms, 3)) ms, "
            + "p99.9 \(fmt(p999_ms, 3)) ms, max \(fmt(max_ms, 3)) ms"
    }
}

/// Journal figures over a run, from bookies' counters before and after: fsyncs/s and entries per fsync, with the
/// engine and sync mode (comma-joined when bookies differ).
struct SyncFigures: Encodable {
    var syncs_per_sec: Double
    var entries_per_sync: Double
    var engine: String
    var sync_mode: String

    init(syncs: Double, records: Double, seconds: Double, engines: Set<String>, modes: Set<String>) {
        syncs_per_sec = (syncs / seconds).rounded()
        entries_per_sync = syncs > 0 ? (records / syncs * 10).rounded() / 10 : 0
        engine = engines.sorted().joined(separator: ",")
        sync_mode = modes.sorted().joined(separator: ",")
    }

    /// "N fsyncs/s, M entries/fsync", for people.
    var line: String { "\(fmt(syncs_per_sec, 0)) fsyncs/s, \(fmt(entries_per_sync, 1)) entries/fsync" }
}

/// One JSON object per run: the command's parameters, its figures, and what else it measured, side by side.
struct RunReport<Parameters: Encodable, Extra: Encodable>: Encodable {
    var parameters: Parameters
    var figures: RunFigures
    var extra: Extra

    func encode(to encoder: Encoder) throws {
        try parameters.encode(to: encoder)
        try figures.encode(to: encoder)
        try extra.encode(to: encoder)
    }
}
