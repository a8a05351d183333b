import Foundation

/// Waiting for a child without Foundation's `waitUntilExit`, which blocks without bound: with dozens of children in
/// one test process it has missed an exit (the child left a zombie and `isRunning` stayed true), and the thread it
/// held was one of the two every test shares, so the whole run hung. These look, sleep, and give up when bounded.
extension Process {
    /// The exit status once the child is seen to exit within `seconds` (sleeping between looks); nil otherwise.
    public func exitStatus(within seconds: Double) async -> Int32? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while isRunning && !hasExited && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
        return isRunning ? nil : terminationStatus
    }

    /// The same, holding the thread: for `defer` blocks and synchronous code, after a SIGKILL (an immediate exit).
    public func exitStatusHoldingThread(within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning && !hasExited && Date() < deadline { usleep(5_000) }
        return isRunning ? nil : terminationStatus
    }

    /// The kernel's view: the child is a zombie (exited, not yet reaped) or gone. Foundation's `isRunning` can lag
    /// far behind it, and a wait that held one of the tests' shared threads for that long stalled every test.
    private var hasExited: Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first == "Z"
    }
}
