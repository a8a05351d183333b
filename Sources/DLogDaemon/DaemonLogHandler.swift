import CSystemd
import Foundation
import Logging
import Synchronization

/// The log level of the whole process, read on every log call and set by the admin socket.
public final class DaemonLogLevel: Sendable {
    public static let shared = DaemonLogLevel()
    private static let levels: [Logger.Level] = [.trace, .debug, .info, .notice, .warning, .error, .critical]
    private let index = Atomic(2)

    public var level: Logger.Level {
        get { Self.levels[index.load(ordering: .relaxed)] }
        set { index.store(Self.levels.firstIndex(of: newValue)!, ordering: .relaxed) }
    }
}

/// Where the daemon's log lines go, and with which fields: natively to journald (`sd_journal_sendv`, one
/// structured entry per line) when standard error is the journal's stream, else to standard error as one line
/// with a `<N>` priority prefix (what systemd and syslog read as the level).
public struct DaemonLogHandler: LogHandler {
    /// Who logs: the role (`bookie`, `metadata`, `proxy`, `standalone`) and the instance (the config's name
    /// under systemd, e.g. `bookie` for /etc/dlog/bookie.conf).
    public struct Origin: Sendable {
        public var role: String
        public var instance: String
        public init(role: String, instance: String) {
            self.role = role
            self.instance = instance
        }
    }

    /// The process's level, changed at run time through the admin socket (`log-level debug`).
    public var logLevel: Logger.Level {
        get { DaemonLogLevel.shared.level }
        set { DaemonLogLevel.shared.level = newValue }
    }
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let origin: Origin
    let toJournal: Bool

    public init(origin: Origin, level: Logger.Level, toJournal: Bool = DaemonLogHandler.stderrIsJournal) {
        self.origin = origin
        self.toJournal = toJournal
        DaemonLogLevel.shared.level = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        if let error = event.error { merged["error"] = "\(error)" }
        if toJournal {
            Self.sendToJournal(Self.journalFields(event.level, "\(event.message)", merged, origin: origin,
                                                  file: event.file, function: event.function, line: event.line))
        } else {
            FileHandle.standardError.write(Data((Self.stderrLine(event.level, "\(event.message)", merged, origin: origin) + "\n").utf8))
        }
    }

    /// The syslog priority of a level: 7 debug … 2 critical.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// The journal entry's fields, `NAME=value` each. Metadata keys that name a ledger, a log or a bookie get
    /// the project's well-known fields (so `journalctl LEDGER_ID=L42` finds them); the others `DLOG_<KEY>`.
    public static func journalFields(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata, origin: Origin,
                                     file: String, function: String, line: UInt) -> [String] {
        var fields = ["MESSAGE=\(message)", "PRIORITY=\(priority(level))", "SYSLOG_IDENTIFIER=dlogd",
                      "DLOG_ROLE=\(origin.role)", "DLOG_INSTANCE=\(origin.instance)",
                      "CODE_FILE=\(file)", "CODE_LINE=\(line)", "CODE_FUNC=\(function)"]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            fields.append("\(fieldName(key))=\(value)")
        }
        return fields
    }

    static func fieldName(_ key: String) -> String {
        switch key {
        case "ledger", "ledger_id": return "LEDGER_ID"
        case "log", "log_name", "stream": return "LOG_NAME"
        case "bookie", "bookie_id": return "BOOKIE_ID"
        default:
            // Journal field names: upper-case letters, digits and underscores, not starting with one.
            return "DLOG_" + String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
        }
    }

    /// One line for standard error: `<N>dlogd[role/instance]: message key=value ...`, newlines escaped so one
    /// event stays one line.
    public static func stderrLine(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata, origin: Origin) -> String {
        var line = "<\(priority(level))>dlogd[\(origin.role)/\(origin.instance)]: \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
        return line.replacingOccurrences(of: "\n", with: "\\n")
    }

    /// Whether standard error is connected to the journal: systemd sets JOURNAL_STREAM to the device and inode
    /// of the stream it gave the service, which a redirected stderr no longer matches.
    public static var stderrIsJournal: Bool {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(2, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }

    static func sendToJournal(_ fields: [String]) {
        let buffers = fields.map { Array($0.utf8) }
        var vectors: [iovec] = []
        vectors.reserveCapacity(buffers.count)
        func send(_ index: Int) {
            guard index < buffers.count else {
                _ = sd_journal_sendv(vectors, Int32(vectors.count))
                return
            }
            buffers[index].withUnsafeBufferPointer { bytes in
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count))
                send(index + 1)
            }
        }
        send(0)
    }
}
