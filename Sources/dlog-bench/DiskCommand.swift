import ArgumentParser
import DLogIO
import Foundation
import Histogram

/// The disk's own write+fdatasync rate, measured the way the journal writes: 4 KiB-aligned writes over a
/// pre-written file, each followed by fdatasync, one at a time.
struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disk",
        abstract: "Measure write+fdatasync on a directory, the way the journal writes.")

    @Option(help: "Directory to measure (a scratch file is created and removed).") var dir: String
    @Option(help: "Bytes per write (rounded up to 4096).") var size = 4096
    @Option(help: "Seconds to run.") var duration = 5.0
    @Option(help: "fdatasync (buffered write + fdatasync) or dsync (O_DIRECT + RWF_DSYNC).") var sync = "fdatasync"
    @Flag(help: "Print one JSON object.") var json = false

    struct Result: Codable {
        var dir: String
        var size: Int
        var sync: String
        var syncs_per_sec: Double
        var mb_per_sec: Double
        var p50_ms: Double
        var p99_ms: Double
        var p999_ms: Double
        var max_ms: Double
    }

    func run() throws {
        guard let mode = SyncMode(rawValue: sync) else { throw ValidationError("--sync must be fdatasync or dsync") }
        guard size > 0, size <= 64 << 20 else { throw ValidationError("--size must be 1...64M") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0...3600 seconds") }
        let block = (size + 4095) / 4096 * 4096
        let fileBytes = max(64 << 20, block * 16)
        let path = dir + "/dlog-bench-disk.tmp"
        try FileSystem.makeDirectory(dir)
        // Pre-write the file, as the journal does, so the runs overwrite written blocks.
        let prep = try File.open(path, [.create, .truncate])
        let zeros = AlignedBuffer(capacity: 1 << 20)
        zeros.count = 1 << 20
        for off in stride(from: 0, to: fileBytes, by: 1 << 20) {
            try prep.pwriteAll(UnsafeRawBufferPointer(zeros.bytes), at: Int64(off))
        }
        try prep.fsync()
        prep.close()
        defer { try? FileSystem.remove(path) }
        let file = try File.open(path, mode.fileOptions)
        defer { file.close() }
        let engine = BlockingEngine(syncMode: mode)
        let buffer = AlignedBuffer(capacity: block)
        buffer.count = block
        for i in 0..<block { buffer.base.storeBytes(of: UInt8(truncatingIfNeeded: i), toByteOffset: i, as: UInt8.self) }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000)
        let start = ContinuousClock.now
        let end = start + .milliseconds(Int64(duration * 1000))
        var offset = 0
        var count = 0
        while ContinuousClock.now < end {
            let t0 = ContinuousClock.now
            try engine.submit(file: PosixFile(file: file), buffer: buffer.base, count: block, offset: Int64(offset), token: 1)
            _ = try engine.awaitCompletion()
            _ = histogram.record(micros(ContinuousClock.now - t0))
            count += 1
            offset += block
            if offset + block > fileBytes { offset = 0 }
        }
        let elapsed = Double(micros(ContinuousClock.now - start)) / 1e6
        let lat = LatencySummary(histogram)
        let result = Result(dir: dir, size: block, sync: mode.rawValue, syncs_per_sec: (Double(count) / elapsed).rounded(),
                            mb_per_sec: (Double(count * block) / elapsed / 1e6 * 10).rounded() / 10,
                            p50_ms: lat.p50_ms, p99_ms: lat.p99_ms, p999_ms: lat.p999_ms, max_ms: lat.max_ms)
        if json {
            printJSON(result)
        } else {
            print("disk \(dir): \(block) B writes + \(mode.rawValue): \(fmt(result.syncs_per_sec, 0)) syncs/s, "
                  + "\(fmt(result.mb_per_sec, 1)) MB/s, p50 \(fmt(lat.p50_ms, 3)) ms, p99 \(fmt(lat.p99_ms, 3)) ms, "
                  + "p99.9 \(fmt(lat.p999_ms, 3)) ms, max \(fmt(lat.max_ms, 3)) ms")
        }
    }
}
