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

    /// One lock's share of the counts. Writers on different event loops take different shards: one lock for
    /// all of them was contended on every confirmation, and a contended lock sleeps in the kernel.
    private final class Shard: Sendable {
        let counts = Mutex(Counts())
    }

    /// Where confirmed writes are logged, if anywhere (--acked-log).
    let ackedLog: String?
    private let shards: [Shard]
    private let flusher = Mutex<Task<Void, Never>?>(nil)

    /// `shards`: how many locks the counts are spread over; a writer names its shard when it reports (a
    /// connection's index, so the writers of one event loop share one).
    init(ackedLog: String?, shards: Int = 1) {
        self.ackedLog = ackedLog
        self.shards = (0..<max(1, shards)).map { _ in Shard() }
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

    func confirmed(latency: Duration, ackedLine: String?, shard: Int = 0) {
        shards[shard % shards.count].counts.withLock { c in
            c.ops += 1
            _ = c.histogram.record(micros(latency))
            if let ackedLine { c.acked.append(ackedLine) }
        }
    }

    func failed(_ error: any Error, shard: Int = 0) {
        shards[shard % shards.count].counts.withLock { c in
            c.errors += 1
            if c.firstError == nil { c.firstError = "\(error)" }
        }
    }

    /// After the run: stops the periodic writes, writes the last lines (throwing if they cannot be written,
    /// so a confirmation is never dropped silently), and returns the figures of all shards together.
    func finish() async throws -> Counts {
        if let task = flusher.withLock({ $0 }) {
            task.cancel()
            await task.value
        }
        if let ackedLog { try flush(to: ackedLog) }
        var all = Counts()
        for shard in shards {
            shard.counts.withLock { c in
                all.histogram.add(c.histogram)
                all.ops += c.ops
                all.errors += c.errors
                if all.firstError == nil { all.firstError = c.firstError }
            }
        }
        return all
    }

    private func flush(to path: String) throws {
        var lines: [String] = []
        for shard in shards {
            shard.counts.withLock { c in
                lines.append(contentsOf: c.acked)
                c.acked.removeAll(keepingCapacity: true)
            }
        }
        guard !lines.isEmpty else { return }
        do {
            try appendAckedLines(lines, to: path)
        } catch {
            // Kept for `finish`, which reports the error: none is dropped.
            shards[0].counts.withLock { c in c.acked.insert(contentsOf: lines, at: 0) }
            throw error
        }
    }
}

/// A CRC as acked logs write it: 8 lowercase hex digits (String(format:) costs microseconds per line).
func hex8(_ value: UInt32) -> String {
    let hex = String(value, radix: 16)
    return String(repeating: "0", count: 8 - hex.utf8.count) + hex
}
