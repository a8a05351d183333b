import ArgumentParser
import DLogDaemon
import DLogIO
import DLogMetadata
import DLogWire
import Foundation
import Logging

struct DLogd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlogd",
        abstract: "The DistributedLog daemon.",
        subcommands: [LaunchCommand.self, BookieCommand.self, MetadataCommand.self, ProxyCommand.self, StandaloneCommand.self,
                      GeneratorCommand.self],
        defaultSubcommand: LaunchCommand.self)
}

/// `dlogd --config FILE`: the role comes from the file's `role` key (what the systemd unit runs:
/// `dlogd@bookie` reads /etc/dlog/bookie.conf).
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the role a config file names (role = bookie | metadata | proxy | standalone).")

    @Option(help: "Config file (key = value lines) with a `role` key.") var config: String
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (default: the config's log_level, else info)") var logLevel: String?

    func run() throws {
        guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
            throw ValidationError("cannot read config file \(config)")
        }
        // Only the role is read here; the role's own command checks every other key.
        let roles: [String: any ParsableCommand.Type] = ["bookie": BookieCommand.self, "metadata": MetadataCommand.self,
                                                         "proxy": ProxyCommand.self, "standalone": StandaloneCommand.self]
        switch configRole(text) {
        case let role? where roles[role] != nil:
            var command = try roles[role]!.parse(["--config", config] + (logLevel.map { ["--log-level", $0] } ?? []))
            try command.run()
        case let other?:
            throw ValidationError("\(config): role '\(other)' is not one of bookie, metadata, proxy, standalone")
        case nil:
            throw ValidationError("\(config) has no 'role = bookie | metadata | proxy | standalone' line; add one, or run `dlogd bookie|metadata|proxy --config \(config)`")
        }
    }
}

struct BookieCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bookie", abstract: "Run a bookie: stores ledger entries durably.")

    @OptionGroup var common: RoleOptions
    @Option(name: .customLong("journal-dir"), help: "Journal directory (repeat for several).") var journalDirs: [String] = []
    @Option(name: .customLong("ledger-dir"), help: "Ledger directory (repeat for several).") var ledgerDirs: [String] = []
    @Option(help: "TCP port (0 picks a free one).") var port: Int?
    @Option(help: "Address to listen on.") var host: String?
    @Option(help: "Metadata store URI (dlog://host:port or etcd://host:port/prefix); without it the bookie runs alone.")
    var metadata: String?
    @Flag(name: .customLong("journal-truncate-corrupt"),
          help: "Cut the journal at a corrupt record instead of refusing to start (discards what follows).")
    var truncateCorrupt = false

    func run() throws {
        try common.launch("bookie", BookieSettings.self, flags: { settings in
            if !journalDirs.isEmpty { settings.journalDirectories = journalDirs }
            if !ledgerDirs.isEmpty { settings.ledgerDirectories = ledgerDirs }
            if let port { settings.port = try checkedPort(port) }
            if let host { settings.host = host }
            if let metadata { settings.metadata = try checkedMetadata(metadata) }
            try settings.check()
        }, run: { settings, logger in
            BookieRole.run(settings: settings, truncateCorrupt: truncateCorrupt, config: common.config, logger: logger)
        })
    }
}

struct MetadataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metadata",
        abstract: "Run the metadata role: the cluster's coordination store (versioned keys, watches, leases).")

    @OptionGroup var common: RoleOptions
    @Option(name: .customLong("data-dir"), help: "Directory of the store's database.") var dataDir: String?
    @Option(help: "TCP port (0 picks a free one).") var port: Int?
    @Option(help: "Address to listen on.") var host: String?

    func run() throws {
        try common.launch("metadata", MetadataSettings.self, flags: { settings in
            if let dataDir { settings.dataDirectory = dataDir }
            if let port { settings.port = try checkedPort(port) }
            if let host { settings.host = host }
        }, run: { settings, logger in
            MetadataRole.run(settings: settings, config: common.config, logger: logger)
        })
    }
}

struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run a proxy: owns log streams and writes clients' records into them (the write tier).")

    @OptionGroup var common: RoleOptions
    @Option(help: "Metadata store URI (dlog://host:port or etcd://host:port/prefix).") var metadata: String?
    @Option(help: "TCP port (0 picks a free one).") var port: Int?
    @Option(help: "Address to listen on.") var host: String?

    func run() throws {
        try common.launch("proxy", ProxySettings.self, flags: { settings in
            if let metadata { settings.metadata = try checkedMetadata(metadata) }
            if let port { settings.port = try checkedPort(port) }
            if let host { settings.host = host }
        }, run: { settings, logger in
            ProxyRole.run(settings: settings, config: common.config, logger: logger)
        })
    }
}

struct StandaloneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standalone",
        abstract: "Run metadata, 3 bookies and a proxy in one process, data under one directory (to try it out).")

    @OptionGroup var common: RoleOptions
    @Option(help: "Directory for all data (default ./data).") var data: String?
    @Option(name: .customLong("base-port"), help: "Metadata port; bookies use the next 3, the proxy base + 10 (default 3180).") var basePort: Int?
    @Option(help: "Address to listen on (default 127.0.0.1).") var host: String?
    @Option(name: .customLong("tls-mode"), help: "off, optional or required: TLS on every port, with a CA made under DATA/tls on first start (default off).")
    var tlsMode: String?

    func run() throws {
        try common.launch("standalone", StandaloneSettings.self, flags: { settings in
            if let tlsMode {
                guard let mode = TLSMode(rawValue: tlsMode) else { throw ValidationError("--tls-mode \(tlsMode): allowed: off, optional, required") }
                settings.tlsMode = mode
            }
            if let data { settings.dataDirectory = data }
            if let basePort {
                guard (1...65_000).contains(basePort) else { throw ValidationError("--base-port \(basePort) is not in 1...65000") }
                settings.basePort = basePort
            }
            if let host { settings.host = host }
        }, run: { settings, logger in
            StandaloneRole.run(settings: settings, logger: logger)
        })
    }
}

/// `--config` and `--log-level`, and the one way every role starts from them: the file's values, then the
/// flags, each checked; logging; the admin socket's default; the role's exit code.
struct RoleOptions: ParsableArguments {
    @Option(help: "Config file (key = value lines). Flags override it.") var config: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (default: the config's log_level, else info)") var logLevel: String?

    func launch<S: RoleSettings>(_ role: String, _: S.Type, flags: (inout S) throws -> Void,
                                 run: (S, Logger) -> Int32) throws {
        var settings = S()
        do {
            if let config { try settings.apply(try loadConfig(config, keys: S.keys, role: role)) }
            try flags(&settings)
        } catch let problem as ConfigFile.Problem {
            throw ValidationError(problem.message)
        }
        try bootstrapLogging(logLevel, role: role, config: config)
        settings.adminSocket = settings.adminSocket ?? defaultAdminSocket(role: role, config: config)
        let logger = Logger(label: "dlogd.\(role)")
        switch Memory.allocator {
        case .jemalloc(let version):
            logger.info("memory allocator: jemalloc \(version)", metadata: ["allocator": "jemalloc", "version": "\(version)"])
        case .other(let library):
            // Only where something preloaded another malloc: dlogd links jemalloc.
            logger.warning("memory allocator: the malloc of \(library), not the jemalloc dlogd is built with",
                           metadata: ["allocator": "\(library)"])
        }
        let code = run(settings, logger)
        if code != 0 { throw ExitCode(code) }
    }
}

/// `dlogd systemd-generator NORMAL [EARLY LATE]`: what /usr/lib/systemd/system-generators/dlogd-generator runs.
/// Writes a drop-in per /etc/dlog/NAME.conf so dlogd@NAME waits for the mounts of its data directories and may
/// write there. Never fails: a generator that exits non-zero only adds noise to the boot.
struct GeneratorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "systemd-generator",
        abstract: "Write unit drop-ins (RequiresMountsFor, ReadWritePaths) for each config's data directories.")

    @Option(name: .customLong("config-dir"), help: "Where the instances' config files are.") var configDir = "/etc/dlog"
    @Argument(help: "The generator's output directories (systemd passes normal, early and late).") var outputs: [String]

    func run() throws {
        guard let normal = outputs.first else { throw ValidationError("give the output directory (systemd passes it)") }
        for problem in UnitGenerator.generate(configDirectory: configDir, output: normal) {
            FileHandle.standardError.write(Data("dlogd-generator: \(problem)\n".utf8))
        }
    }
}

/// The value of a config text's `role` key, if it has one.
func configRole(_ text: String) -> String? {
    text.split(separator: "\n").lazy.map { $0.trimmingCharacters(in: .whitespaces) }
        .first { $0.hasPrefix("role") && $0.dropFirst(4).trimmingCharacters(in: .whitespaces).hasPrefix("=") }
        .map { String($0.split(separator: "=", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) }
}

func loadConfig(_ path: String, keys: Set<String>, role: String) throws -> ConfigFile {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("cannot read config file \(path)")
    }
    // A file for another role fails on its own keys; say what is really wrong first.
    if let named = configRole(text), named != role {
        throw ValidationError("\(path) is the \(named) role's config (role = \(named)), not the \(role) role's; run `dlogd --config \(path)` to start the role it names")
    }
    return try ConfigFile.parse(text, path: path, knownKeys: keys)
}

func checkedMetadata(_ uri: String) throws -> String {
    do { _ = try MetadataURI(parsing: uri) } catch { throw ValidationError("--metadata: \(error)") }
    return uri
}

func checkedPort(_ port: Int) throws -> Int {
    guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is not in 0...65535") }
    return port
}

/// /run/dlog/INSTANCE.sock when /run/dlog exists (systemd's RuntimeDirectory=); else none unless configured.
func defaultAdminSocket(role: String, config: String?) -> String? {
    guard FileManager.default.fileExists(atPath: "/run/dlog") else { return nil }
    return "/run/dlog/\(instanceName(role: role, config: config)).sock"
}

/// The instance: the config file's name (bookie for /etc/dlog/bookie.conf, as in dlogd@bookie), else the role.
func instanceName(role: String, config: String?) -> String {
    config.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension } ?? role
}

/// Logging for the whole process: to journald natively when standard error is the journal (under systemd),
/// else `<N>`-prefixed lines on standard error. The instance is the config file's name (bookie for
/// /etc/dlog/bookie.conf, as in dlogd@bookie), else the role.
func bootstrapLogging(_ name: String?, role: String, config: String?) throws {
    // The flag wins; else the config file's log_level; else info.
    let fromFile = config.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }.flatMap { text in
        text.split(separator: "\n").lazy.map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.hasPrefix("log_level") && $0.dropFirst(9).trimmingCharacters(in: .whitespaces).hasPrefix("=") }
            .map { String($0.split(separator: "=", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) }
    }
    let chosen = name ?? fromFile ?? "info"
    guard let level = Logger.Level(rawValue: chosen) else {
        throw ValidationError("log level \(chosen) is not one of trace, debug, info, notice, warning, error, critical")
    }
    let origin = DaemonLogHandler.Origin(role: role, instance: instanceName(role: role, config: config))
    LoggingSystem.bootstrap { _ in DaemonLogHandler(origin: origin, level: level) }
}

// A bad command line is a usage error (64, with the usage); a bad config file or value found once running is a
// refusal (exit 2, one line), which the unit's RestartPreventExitStatus= keeps systemd from retrying.
var command: ParsableCommand
do {
    command = try DLogd.parseAsRoot()
} catch {
    DLogd.exit(withError: error)
}
do {
    try command.run()
} catch let refusal as ValidationError {
    FileHandle.standardError.write(Data("dlogd: \(refusal)\n".utf8))
    exit(2)
} catch {
    DLogd.exit(withError: error)
}
