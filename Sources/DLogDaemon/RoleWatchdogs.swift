import DLogMetadata
import DLogProxy
import Foundation
import Synchronization

/// The metadata and proxy roles' health for systemd (the bookie's is in BookieRole): probes that prove the
/// role's own machinery runs, and a one-line status.
enum RoleWatchdogs {
    /// The metadata role: its event loops run tasks and its store answers (the store's actor and database
    /// thread make progress); the status line has the revision, leases, watchers and commits/s.
    static func metadata(_ server: MetadataServer, _ store: EmbeddedStore) -> Watchdog {
        let commits = Mutex(RateMeter())
        let storeProbe = BoundedProbe()
        return Watchdog(probes: [
            { server.eventLoopsRespond(within: .seconds(1)) ? nil : "the network event loops did not run a task within 1 s" },
            { storeProbe.answers(within: .seconds(2)) { _ = await store.stats() } ? nil : "the store did not answer within 2 s" },
        ], status: {
            guard let stats = try? runBlocking({ await store.stats() }) else { return "serving" }
            let rate = commits.withLock { $0.perSecond(stats.commits) }
            return "serving; revision \(stats.revision), \(stats.leases) leases, \(stats.watchers) watchers, \(rate) commits/s"
        })
    }

    /// The proxy: its event loops run tasks; the status line has the streams owned and records/s written.
    static func proxy(_ server: ProxyServer, _ service: ProxyService) -> Watchdog {
        let records = Mutex(RateMeter())
        return Watchdog(probes: [
            { server.eventLoopsRespond(within: .seconds(1)) ? nil : "the network event loops did not run a task within 1 s" },
        ], status: {
            let counters = service.counters
            let rate = records.withLock { $0.perSecond(counters.recordsWritten) }
            return "serving; \(counters.streamsOwned) streams owned, \(rate) records/s"
        })
    }
}

/// Runs a probe's operation with a time limit, one at a time: while an earlier run is still stuck, the probe
/// fails at once instead of starting another, so a hung store cannot pile up tasks.
final class BoundedProbe: Sendable {
    private let running = Atomic(false)

    /// Whether `operation` finishes within `timeout`; a probe must not hang on what it probes.
    func answers(within timeout: Duration, _ operation: @escaping @Sendable () async -> Void) -> Bool {
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return false
        }
        let done = DispatchSemaphore(value: 0)
        Task { [self] in
            await operation()
            running.store(false, ordering: .releasing)
            done.signal()
        }
        let nanos = Int(timeout.components.seconds) * 1_000_000_000 + Int(timeout.components.attoseconds / 1_000_000_000)
        return done.wait(timeout: .now() + .nanoseconds(nanos)) == .success
    }
}

/// A counter's rate between two looks (for status lines).
struct RateMeter {
    private var last: UInt64 = 0
    private var at = ContinuousClock.now

    mutating func perSecond(_ total: UInt64) -> Int {
        let now = ContinuousClock.now
        let elapsed = now - at
        let seconds = max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        defer { (last, at) = (total, now) }
        return Int((Double(total &- last) / seconds).rounded())
    }
}
