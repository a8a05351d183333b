import ArgumentParser
import DLogDaemon
import Foundation
import Logging

struct DLogd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlogd",
        abstract: "The DistributedLog daemon.",
        subcommands: [BookieCommand.self])
}

struct BookieCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bookie", abstract: "Run a bookie: stores ledger entries durably.")

    @Option(help: "Config file (key = value lines). Flags override it.") var config: String?
    @Option(name: .customLong("journal-dir"), help: "Journal directory (repeat for several).") var journalDirs: [String] = []
    @Option(name: .customLong("ledger-dir"), help: "Ledger directory (repeat for several).") var ledgerDirs: [String] = []
    @Option(help: "TCP port (0 picks a free one).") var port: Int?
    @Option(help: "Address to listen on.") var host: String?
    @Flag(name: .customLong("journal-truncate-corrupt"),
          help: "Cut the journal at a corrupt record instead of refusing to start (discards what follows).")
    var truncateCorrupt = false
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical") var logLevel = "info"

    func run() throws {
        var settings = BookieSettings()
        do {
            if let config {
                guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                    throw ValidationError("cannot read config file \(config)")
                }
                try settings.apply(try ConfigFile.parse(text, path: config, knownKeys: BookieSettings.keys))
            }
            if !journalDirs.isEmpty { settings.journalDirectories = journalDirs }
            if !ledgerDirs.isEmpty { settings.ledgerDirectories = ledgerDirs }
            if let port {
                guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is not in 0...65535") }
                settings.port = port
            }
            if let host { settings.host = host }
            try settings.check()
        } catch let problem as ConfigFile.Problem {
            throw ValidationError(problem.message)
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level \(logLevel) is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let code = BookieRole.run(settings: settings, truncateCorrupt: truncateCorrupt,
                                  logger: Logger(label: "dlogd.bookie"))
        if code != 0 { throw ExitCode(code) }
    }
}

DLogd.main()
