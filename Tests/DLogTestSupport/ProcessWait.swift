import Foundation

/// Waiting for a child without trusting Foundation alone. `waitUntilExit` blocks without bound, and `isRunning`
/// has lagged an exit by many seconds with dozens of children in one test process: a wait that held one of the
/// two threads every test shares for that long stalled every test (leases of other tests expired). These ask the
/// kernel too, sleep between looks, and give up when bounded.
extension Process {
    /// The child's exit status once it has exited, by Foundation's view or the kernel's (a zombie not yet reaped
    /// carries its status in /proc); nil while it runs. As `terminationStatus`: the exit code, or the signal.
    public var statusIfExited: Int32? {
        if !isRunning { return terminationStatus }
        // Gone from /proc but still running for Foundation: it reaped the child and is about to say so.
        guard let stat = try? String(contentsOfFile: "/proc/\(processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After the name: field 3 is the state, field 52 the exit status in waitpid's form (Linux 3.5 and later).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.first == "Z", fields.count > 49, let raw = Int32(fields[49]) else { return nil }
        return raw & 0x7F == 0 ? (raw >> 8) & 0xFF : raw & 0x7F
    }

    /// The exit status once the child is seen to exit within `seconds` (sleeping between looks); nil otherwise.
    public func exitStatus(within seconds: Double) async -> Int32? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let status = statusIfExited { return status }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return statusIfExited
    }

    /// The same, holding the thread: for `defer` blocks and synchronous code, after a SIGKILL (an immediate exit).
    public func exitStatusHoldingThread(within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let status = statusIfExited { return status }
            usleep(5_000)
        }
        return statusIfExited
    }
}
