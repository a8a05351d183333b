import CSystemd
import Foundation
import Logging

/// SIGHUP: read the config file again and apply what can change while running (the log level; a proxy's
/// limits), telling systemd RELOADING=1 before and READY=1 after. A file that no longer parses changes
/// nothing: the error is logged and the running settings stay.
public final class Reload {
    private let source: DispatchSourceSignal

    /// `apply` gets the file's text; it throws to refuse it.
    init(config: String?, logger: Logger, apply: @escaping @Sendable (String) throws -> Void) {
        signal(SIGHUP, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let usec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
            _ = sd_notify(0, "RELOADING=1\nMONOTONIC_USEC=\(usec)")
            defer { _ = sd_notify(0, "READY=1") }
            guard let config else {
                logger.notice("SIGHUP: no config file to reload")
                return
            }
            do {
                guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                    throw ConfigFile.Problem(message: "cannot read config file \(config)")
                }
                try apply(text)
                logger.notice("reloaded", metadata: ["config": "\(config)", "log_level": "\(DaemonLogLevel.shared.level)"])
            } catch {
                logger.error("reload refused; the running settings stay: \(error)")
            }
        }
        source.resume()
    }

    /// The reloadable `log_level` key, applied.
    public static func applyLogLevel(_ file: ConfigFile) throws {
        guard let name = file.string("log_level") else { return }
        guard let level = Logger.Level(rawValue: name) else {
            throw file.problem("log_level", allowed: "trace, debug, info, notice, warning, error, critical")
        }
        DaemonLogLevel.shared.level = level
    }
}
