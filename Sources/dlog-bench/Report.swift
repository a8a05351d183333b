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
    UInt64(max(0, d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000))
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
