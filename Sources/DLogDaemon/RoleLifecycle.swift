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

    /// How long a graceful stop may take before the process exits anyway: under the unit's TimeoutStopSec=60,
    /// so the daemon says why instead of being killed silently. Nothing acknowledged depends on the rest of a
    /// stop: adds are journaled before they are answered, and an owner's lease lapses without it.
    static let stopTimeout: Duration = .seconds(45)

    /// Blocks until SIGTERM/SIGINT, then tells systemd the role is stopping and bounds the stop that follows.
    static func waitForTermination(_ termination: Termination, logger: Logger? = nil) {
        termination.wait()
        _ = sd_notify(0, "STOPPING=1")
        let bound = Thread {
            Thread.sleep(forTimeInterval: Double(stopTimeout.components.seconds))
            logger?.critical("graceful stop did not finish within \(stopTimeout.components.seconds) s; exiting now")
            FileHandle.standardError.write(Data("dlogd: graceful stop did not finish within \(stopTimeout.components.seconds) s; exiting now\n".utf8))
            _exit(1)
        }
        bound.name = "dlogd-stop-bound"
        bound.start()
    }

    /// Reports a failure to start in the log and on standard error; returns the exit code for it (2).
    static func startFailed(role: String, _ error: any Error, logger: Logger) -> Int32 {
        logger.critical("\(role) cannot start: \(error)")
        FileHandle.standardError.write(Data("dlogd: \(error)\n".utf8))
        return 2
    }
}
