import CSystemd
import Foundation
import Logging

/// The steps every role takes the same way around its own start and stop.
enum RoleLifecycle {
    /// Says the role serves: one line on standard output (scripts and tests wait for it) and READY=1 to systemd.
    static func announceReady(role: String, host: String, port: Int) {
        FileHandle.standardOutput.write(Data("dlogd \(role) listening on \(host):\(port)\n".utf8))
        _ = sd_notify(0, "READY=1\nSTATUS=serving on \(host):\(port)")
    }

    /// Blocks until SIGTERM/SIGINT, then tells systemd the role is stopping.
    static func waitForTermination(_ termination: Termination) {
        termination.wait()
        _ = sd_notify(0, "STOPPING=1")
    }

    /// Reports a failure to start in the log and on standard error; returns the exit code for it (2).
    static func startFailed(role: String, _ error: any Error, logger: Logger) -> Int32 {
        logger.critical("\(role) cannot start: \(error)")
        FileHandle.standardError.write(Data("dlogd: \(error)\n".utf8))
        return 2
    }
}
