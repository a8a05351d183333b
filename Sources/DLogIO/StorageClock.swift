#if canImport(Glibc)
import Glibc
#endif

/// Time as the storage core sees it, and its one way to wait: the seam that lets a simulated run pace background
/// work (compaction, scrub) in simulated time, where the real clock would make it sleep for real. `SystemClock`
/// is the machine's monotonic clock; `SimulatedClock` (module DLogSimulation) moves only when told, and a sleep on
/// it moves it.
public protocol StorageClock: Sendable {
    var now: ContinuousClock.Instant { get }
    /// Blocks the calling thread for `duration` (or, simulated, moves time on by it).
    func sleep(for duration: Duration)
}

public struct SystemClock: StorageClock {
    public init() {}

    public var now: ContinuousClock.Instant { .now }

    public func sleep(for duration: Duration) {
        guard duration > .zero else { return }
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}

/// Keeps background work to a budget of bytes a second: call `spent` after each piece; it sleeps (on the clock)
/// while the work is ahead of the budget by more than a millisecond.
public struct Pacer {
    public let bytesPerSecond: Int
    public let clock: any StorageClock
    public let started: ContinuousClock.Instant
    public private(set) var bytes: Int64 = 0

    public init(bytesPerSecond: Int, clock: any StorageClock) {
        precondition(bytesPerSecond > 0, "a budget of bytes a second is positive")
        self.bytesPerSecond = bytesPerSecond
        self.clock = clock
        started = clock.now
    }

    public mutating func spent(_ count: Int) {
        bytes += Int64(count)
        let due = Duration.milliseconds(bytes * 1000 / Int64(bytesPerSecond))
        let ahead = due - (clock.now - started)
        if ahead > .milliseconds(1) { clock.sleep(for: ahead) }
    }
}
