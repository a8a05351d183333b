import ArgumentParser
import DLogDaemon
import Foundation

/// `dlogctl admin`: a running daemon's admin socket.
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Ask a running dlogd through its admin socket (status, config, log-level, ...).",
        discussion: "`dlogctl admin help` lists what the daemon knows. Examples: `status`, `config`, `log-level debug`, "
            + "bookie `info`, `readonly on|off`, `checkpoint`; proxy `streams`, `release STREAM`, `drain`; metadata `stats`, `keys PREFIX`.")

    @Option(help: "The socket's path.") var socket: String?
    @Option(help: "The instance (as in dlogd@INSTANCE): its socket is /run/dlog/INSTANCE.sock.") var instance = "bookie"
    @Flag(help: "Print the answer as JSON.") var json = false
    @Argument(help: "The command.") var command: String
    @Argument(help: "Its arguments.") var args: [String] = []

    func run() async throws {
        let path = socket ?? "/run/dlog/\(instance).sock"
        var result: Any
        do {
            result = try AdminClient(path: path).call(command, args)
            if command == "scrub" && args.isEmpty { result = try await followScrub(path, start: result) }
        } catch {
            FileHandle.standardError.write(Data("dlogctl: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(Self.table(result))
        }
    }

    /// `scrub` started a pass: follow it to its end with a progress line (rewritten in place on a terminal),
    /// and answer its final status.
    func followScrub(_ path: String, start: Any) async throws -> Any {
        guard let first = start as? [String: Any], let passes = first["passes"] as? Int else { return start }
        if first["started"] as? Bool == false && !json {
            FileHandle.standardError.write(Data("a scrub pass is running already; following it\n".utf8))
        }
        let terminal = isatty(STDERR_FILENO) == 1
        var lastLine = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(250))
            let now = try AdminClient(path: path).call("scrub", ["status"])
            guard let status = now as? [String: Any] else { return now }
            let done = (status["passes"] as? Int ?? 0) > passes || status["last_error"] != nil && status["running"] as? Bool == false
            if !json {
                let line = "scrubbing: \(status["files_done"] ?? 0)/\(status["files_total"] ?? 0) files, "
                    + "\(status["bytes_done"] ?? 0)/\(status["bytes_total"] ?? 0) bytes, \(status["entries_checked"] ?? 0) entries, "
                    + "\((status["damaged"] as? [Any])?.count ?? 0) damaged"
                if terminal {
                    FileHandle.standardError.write(Data("\r\u{1B}[K\(line)\(done ? "\n" : "")".utf8))
                } else if done || ContinuousClock.now - lastLine >= .seconds(5) {
                    lastLine = .now
                    FileHandle.standardError.write(Data("\(line)\n".utf8))
                }
            }
            if done { return status }
        }
    }

    /// For people: scalar keys as aligned `key  value` rows; each list of objects (disks, journals, ledgers,
    /// histogram buckets) as its own table with a header; a plain list one item per line.
    static func table(_ value: Any) -> String {
        if let dictionary = value as? [String: Any] {
            let scalars = dictionary.keys.filter { !(dictionary[$0] is [[String: Any]]) }.sorted()
            var parts: [String] = []
            if !scalars.isEmpty {
                parts.append(alignedColumns(scalars.map { [$0, text(dictionary[$0]!)] }).joined(separator: "\n"))
            }
            for key in dictionary.keys.sorted() {
                guard let rows = dictionary[key] as? [[String: Any]] else { continue }
                parts.append(key + ":\n" + (rows.isEmpty ? "  (none)" : grid(rows)))
            }
            return parts.joined(separator: "\n\n")
        }
        if let rows = value as? [[String: Any]], !rows.isEmpty { return grid(rows) }
        if let list = value as? [Any] { return list.map(text).joined(separator: "\n") }
        return text(value)
    }

    /// Rows of objects as columns: the keys of the first row (a name-like key first), then any others.
    static func grid(_ rows: [[String: Any]]) -> String {
        var columns: [String] = []
        for row in rows { for key in row.keys.sorted() where !columns.contains(key) { columns.append(key) } }
        // Identity first, then what it is, then the figures, in the order people read them.
        let leading = ["journal", "ledger", "path", "bucket", "name", "kind", "directory", "device", "engine", "sync",
                       "count", "entries", "last_entry", "lac", "fenced", "total", "free", "used"].filter(columns.contains)
        columns = leading + columns.filter { !leading.contains($0) }
        let cells = rows.map { row in columns.map { row[$0].map(text) ?? "-" } }
        return alignedColumns([columns] + cells, indent: "  ").joined(separator: "\n")
    }

    static func text(_ v: Any) -> String {
        if let s = v as? String { return s }
        // JSON's true and false arrive as a boolean NSNumber; say them as words, not 1 and 0.
        if let n = v as? NSNumber, String(cString: n.objCType) == "c" { return n.boolValue ? "true" : "false" }
        if v is [Any] || v is [String: Any],
           let data = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(v)"
    }
}
