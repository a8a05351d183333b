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
        let result: Any
        do {
            result = try AdminClient(path: path).call(command, args)
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

    /// A dictionary as aligned `key  value` rows (nested values as compact JSON), a list one item per line.
    static func table(_ value: Any) -> String {
        func text(_ v: Any) -> String {
            if let s = v as? String { return s }
            if v is [Any] || v is [String: Any],
               let data = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .withoutEscapingSlashes]) {
                return String(decoding: data, as: UTF8.self)
            }
            return "\(v)"
        }
        if let dictionary = value as? [String: Any] {
            let width = dictionary.keys.map(\.count).max() ?? 0
            return dictionary.keys.sorted().map { $0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text(dictionary[$0]!) }
                .joined(separator: "\n")
        }
        if let list = value as? [Any] { return list.map(text).joined(separator: "\n") }
        return text(value)
    }
}
