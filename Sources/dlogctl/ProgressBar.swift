import Foundation

/// A one-line progress bar on standard error, redrawn in place at most ten times a second, for work of a known
/// size (`dlogctl write --file`). It draws only when standard error is a terminal: piped or redirected output
/// gets nothing, so scripts and logs see only the result.
struct ProgressBar {
    let total: Int64
    let unit: String
    let shown: Bool
    private let started = ContinuousClock.now
    private var drawn: ContinuousClock.Instant?

    init(total: Int64, unit: String, terminal: Bool = isatty(STDERR_FILENO) == 1) {
        self.total = max(total, 1)
        self.unit = unit
        shown = terminal
    }

    /// Redraws for `done` of `total` bytes and `count` units, unless it drew less than 0.1 s ago.
    mutating func update(done: Int64, count: Int) {
        guard shown else { return }
        let now = ContinuousClock.now
        if let drawn, now - drawn < .milliseconds(100) { return }
        drawn = now
        FileHandle.standardError.write(Data(("\r" + Self.line(done: done, total: total, count: count, unit: unit,
                                                              seconds: (now - started) / .seconds(1)) + "\u{1B}[K").utf8))
    }

    /// Clears the bar, so what is printed next starts on a clean line.
    func finish() {
        if shown && drawn != nil { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    /// `[#########-----------]  45%  12.3 of 27.0 MiB  120000 records  40000/s`
    static func line(done: Int64, total: Int64, count: Int, unit: String, seconds: Double) -> String {
        let fraction = min(max(Double(done) / Double(max(total, 1)), 0), 1)
        let width = 30, filled = Int((fraction * Double(width)).rounded(.down))
        let mib = { (bytes: Int64) in String(format: "%.1f", Double(bytes) / 1_048_576) }
        let rate = seconds > 0 ? "  \(Int((Double(count) / seconds).rounded()))/s" : ""
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
            + String(format: "%3d%%", Int((fraction * 100).rounded(.down))) + "  \(mib(done)) of \(mib(total)) MiB  \(count) \(unit)" + rate
    }
}
