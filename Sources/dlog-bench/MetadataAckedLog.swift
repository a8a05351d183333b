import DLogMetadata
import DLogWire
import Foundation
import Synchronization

/// The acknowledged-updates log of `dlog-bench metadata --acked-log`, read back by `dlog-bench verify --metadata`.
///
/// Text, one line per update the store acknowledged (a create or a compare-and-set that returned a version):
///
///     <key> <version> <crc>
///
/// `key` is the whole key (keys are printable ASCII without spaces, so a space separates fields), `version` the
/// decimal version the store returned, `crc` the CRC32C of the value written as exactly 8 lowercase hex digits.
/// Lines of one key need not be in version order (clients append independently). Runs append to the file, so a
/// log may cover several runs; keys carry a random run id, so runs never share a key.
struct MetadataAck: Hashable, Sendable {
    var key: String
    var version: Version
    var crc: UInt32

    init(key: String, version: Version, crc: UInt32) {
        self.key = key
        self.version = version
        self.crc = crc
    }

    init(key: String, version: Version, value: [UInt8]) {
        self.init(key: key, version: version, crc: CRC32C.checksum(value))
    }

    /// Parses one line; nil when it is not `key version crc`.
    init?(line: Substring) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 3, (try? MetadataLimits.validate(key: String(fields[0]))) != nil,
              let version = Int64(fields[1]), version > 0,
              fields[2].utf8.count == 8, let crc = UInt32(fields[2], radix: 16) else { return nil }
        self.init(key: String(fields[0]), version: Version(version), crc: crc)
    }

    var line: String { "\(key) \(version.rawValue) \(crcHex)\n" }

    var crcHex: String { hex8(crc) }
}

/// Appends lines to an acked log for several clients at once. Each client batches its lines and hands over
/// whole batches, so lines never interleave and no write happens per update; `close` syncs the file once.
final class MetadataAckedLogWriter: Sendable {
    /// A client hands over its lines once it holds this many bytes: bounds each client's buffer.
    static let batchBytesMax = 64 << 10

    let path: String
    private let handle: Mutex<FileHandle?>

    /// Opens `path` for appending, creating it if needed.
    init(path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw BenchError("cannot create --acked-log \(path): check the directory exists and is writable")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw BenchError("cannot open --acked-log \(path) for writing: check its permissions")
        }
        try handle.seekToEnd()
        self.path = path
        self.handle = Mutex(handle)
    }

    /// Appends whole lines. Throws once the file is closed or a write fails: the log would be incomplete.
    func append(_ lines: [UInt8]) throws {
        guard !lines.isEmpty else { return }
        precondition(lines.last == UInt8(ascii: "\n"), "acked log batches hold whole lines")
        try handle.withLock { handle in
            guard let handle else { throw BenchError("--acked-log \(path) written after it was closed") }
            try handle.write(contentsOf: Data(lines))
        }
    }

    /// Flushes to disk once and closes: the log is a record of what the store acknowledged, not a journal.
    func close() throws {
        let taken: FileHandle? = handle.withLock { handle in
            defer { handle = nil }
            return handle
        }
        guard let taken else { return }
        try taken.synchronize()
        try taken.close()
    }
}

/// One client's pending acked-log lines, handed to the writer a batch at a time.
struct MetadataAckedLogBuffer {
    let writer: MetadataAckedLogWriter?
    private var bytes: [UInt8] = []

    init(writer: MetadataAckedLogWriter?) {
        self.writer = writer
        if writer != nil { bytes.reserveCapacity(MetadataAckedLogWriter.batchBytesMax + 2048) }
    }

    mutating func record(_ ack: MetadataAck) throws {
        guard let writer else { return }
        bytes += ack.line.utf8
        if bytes.count >= MetadataAckedLogWriter.batchBytesMax { try flush(to: writer) }
    }

    mutating func flush() throws {
        guard let writer else { return }
        try flush(to: writer)
    }

    private mutating func flush(to writer: MetadataAckedLogWriter) throws {
        try writer.append(bytes)
        bytes.removeAll(keepingCapacity: true)
    }
}

/// The acked log read back: for each key, its highest acknowledged version and that value's CRC.
struct MetadataAckedLog {
    struct Latest {
        var version: Version
        var crc: UInt32
    }

    /// Keys in the order they first appear in the log, so "the first failure" is well defined.
    private(set) var keys: [String] = []
    private(set) var latest: [String: Latest] = [:]
    private(set) var updates = 0
    /// The first key and version acknowledged twice with different values, if any.
    private(set) var reusedVersion: (key: String, version: Version)?

    /// Reads `path`; a line that is not `key version crc` is an error naming `path:line`.
    init(path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw BenchError("cannot read --acked-log \(path): check the path (it is written by dlog-bench metadata --acked-log)")
        }
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty { continue }
            guard let ack = MetadataAck(line: line) else {
                throw BenchError("\(path):\(index + 1): expected 'key version crc32c' (crc as 8 hex digits), found '\(line.prefix(200))'")
            }
            add(ack)
        }
    }

    private mutating func add(_ ack: MetadataAck) {
        updates += 1
        guard let known = latest[ack.key] else {
            keys.append(ack.key)
            latest[ack.key] = Latest(version: ack.version, crc: ack.crc)
            return
        }
        if ack.version > known.version {
            latest[ack.key] = Latest(version: ack.version, crc: ack.crc)
        } else if ack.version == known.version && ack.crc != known.crc && reusedVersion == nil {
            // One version acknowledged for two different values: the store handed a version out twice.
            reusedVersion = (ack.key, ack.version)
        }
    }
}
