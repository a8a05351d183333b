import Foundation
import Histogram
import Synchronization

/// What a run's writers were told: confirmation latencies, counts, the first error, and (with --acked-log)
/// one line per confirmed write. The lines go to the log every 100 ms as the run goes, so a writer killed
/// mid-run leaves a record of (almost all of) what it was told was confirmed, for `verify` to check after
/// recovery, and memory holds only the lines of the last 100 ms.
final class WriteTally: Sendable {
    struct Counts {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000)
        var ops = 0
        var errors = 0
        var firstError: String?
        /// Lines not yet written to the acked log.
        var acked: [String] = []

        /// "N errors (first: …)", for the one-line report.
        var errorsLine: String { "\(errors) errors" + (firstError.map { " (first: \($0))" } ?? "") }
    }

    /// Where confirmed writes are logged, if anywhere (--acked-log).
    let ackedLog: String?
    private let counts = Mutex(Counts())
    private let flusher = Mutex<Task<Void, Never>?>(nil)

    init(ackedLog: String?) {
        self.ackedLog = ackedLog
        guard let ackedLog else { return }
        let task = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                // A failed write keeps its lines for `finish`, which reports the error: none is dropped.
                try? flush(to: ackedLog)
            }
        }
        flusher.withLock { $0 = task }
    }

    /// Whether writers should make acked lines.
    var keepsAcked: Bool { ackedLog != nil }

    func confirmed(latency: Duration, ackedLine: String?) {
        counts.withLock { c in
            c.ops += 1
            _ = c.histogram.record(micros(latency))
            if let ackedLine { c.acked.append(ackedLine) }
        }
    }

    func failed(_ error: any Error) {
        counts.withLock { c in
            c.errors += 1
            if c.firstError == nil { c.firstError = "\(error)" }
        }
    }

    /// After the run: stops the periodic writes, writes the last lines (throwing if they cannot be written,
    /// so a confirmation is never dropped silently), and returns the figures.
    func finish() async throws -> Counts {
        if let task = flusher.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
        if let ackedLog { try flush(to: ackedLog) }
        return counts.withLock { $0 }
    }

    private func flush(to path: String) throws {
        let lines = counts.withLock { c in
            defer { c.acked.removeAll(keepingCapacity: true) }
            return c.acked
        }
        guard !lines.isEmpty else { return }
        do {
            try appendAckedLines(lines, to: path)
        } catch {
            counts.withLock { c in c.acked.insert(contentsOf: lines, at: 0) }
            throw error
        }
    }
}

/// A CRC as acked logs write it: 8 lowercase hex digits (String(format:) costs microseconds per line).
func hex8(_ value: UInt32) -> String {
    let hex = String(value, radix: 16)
    return String(repeating: "0", count: 8 - hex.utf8.count) + hex
}
