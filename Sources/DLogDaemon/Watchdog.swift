import CSystemd
import DLogBookie
import Foundation
import Logging
import Synchronization

/// Health for systemd: every few seconds the role's probes run; when every one passes, the status line is sent
/// (STATUS=) and, with a watchdog (WATCHDOG_USEC), WATCHDOG=1 at half its interval. A probe that fails holds
/// the pings back, so a stalled journal or stuck event loops get the service restarted; a timer that merely
/// fires proves nothing, so the probes look at real progress.
final class Watchdog: Sendable {
    typealias Probe = @Sendable () -> String?

    let interval: Duration
    let watchdogEnabled: Bool
    private let probes: [Probe]
    private let status: @Sendable () -> String
    private let stopped = Atomic(false)

    init(probes: [Probe], status: @escaping @Sendable () -> String) {
        var usec: UInt64 = 0
        watchdogEnabled = sd_watchdog_enabled(0, &usec) > 0 && usec > 0
        // Half the watchdog interval, as systemd asks; without a watchdog, a status line every 5 s.
        interval = watchdogEnabled ? .microseconds(Int64(usec / 2)) : .seconds(5)
        self.probes = probes
        self.status = status
    }

    func start(logger: Logger) {
        let thread = Thread { [self] in
            var complained = false
            while !stopped.load(ordering: .acquiring) {
                Thread.sleep(forTimeInterval: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
                if stopped.load(ordering: .acquiring) { return }
                let problems = probes.compactMap { $0() }
                if problems.isEmpty {
                    complained = false
                    _ = sd_notify(0, (watchdogEnabled ? "WATCHDOG=1\n" : "") + "STATUS=\(status())")
                } else {
                    if !complained { logger.critical("health check failed; not pinging the watchdog", metadata: ["problems": "\(problems.joined(separator: "; "))"]) }
                    complained = true
                    _ = sd_notify(0, "STATUS=unhealthy: \(problems.joined(separator: "; "))")
                }
            }
        }
        thread.name = "dlogd-watchdog"
        thread.start()
    }

    func stop() { stopped.store(true, ordering: .releasing) }
}

/// Whether a journal makes progress: work waiting and no sync since the last look means it is stuck.
public struct JournalProgress: Sendable {
    private var lastSyncs: [UInt64] = []

    public init() {}

    /// Looks at the journals' counters; returns why one is stuck, or nil.
    public mutating func check(_ stats: [JournalStats]) -> String? {
        defer { lastSyncs = stats.map(\.syncs) }
        guard lastSyncs.count == stats.count else { return nil }
        for (index, journal) in stats.enumerated() {
            if let failed = journal.failed { return "journal \(index) failed: \(failed)" }
            if journal.queueDepth > 0 && journal.syncs == lastSyncs[index] {
                return "journal \(index) has \(journal.queueDepth) records waiting and synced nothing since the last check"
            }
        }
        return nil
    }
}

/// The bookie's status line: state, adds/s since the last line, the sync latency p99 from the journals'
/// histograms, and failing checkpoints when there are (what `systemctl status` shows an operator first).
public struct BookieStatusLine: Sendable {
    private var lastRecords: UInt64 = 0
    private var lastTime = ContinuousClock.now

    mutating func line(readOnly: Bool, checkpointFailures: Int = 0, _ stats: [JournalStats]) -> String {
        let now = ContinuousClock.now
        let records = stats.reduce(0) { $0 + $1.recordsSynced }
        let seconds = max(0.001, Double((now - lastTime).components.seconds) + Double((now - lastTime).components.attoseconds) / 1e18)
        let rate = Double(records &- lastRecords) / seconds
        (lastRecords, lastTime) = (records, now)
        var buckets = [UInt64](repeating: 0, count: LatencyBuckets.count)
        for journal in stats { for (i, n) in journal.syncLatencyBuckets.enumerated() { buckets[i] += n } }
        let failing = checkpointFailures > 0 ? ", checkpoints failing (\(checkpointFailures) in a row)" : ""
        // A bookie that has synced nothing yet has no latency to quote: say so rather than print a bound.
        let sync = Self.p99(buckets).map { "sync p99 < \($0)" } ?? "no syncs yet"
        return "\(readOnly ? "read-only" : "writable"), \(Int(rate.rounded())) adds/s, \(sync)" + failing
    }

    /// The upper bound of the bucket holding the 99th percentile (bucket i: < 2^i × 16 µs), or nil when the
    /// histograms hold no sync at all.
    public static func p99(_ buckets: [UInt64]) -> String? {
        let total = buckets.reduce(0, +)
        guard total > 0 else { return nil }
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() {
            seen += n
            if seen * 100 >= total * 99 {
                let micros = 16 << i
                return micros >= 1000 ? "\(micros / 1000) ms" : "\(micros) µs"
            }
        }
        return "more than \((16 << (buckets.count - 1)) / 1000) ms"
    }
}
