import DLogIO
import Synchronization

/// Time that moves only when told to: `now` is a fixed origin plus what `advance` added. A `SimulatedDisk`
/// given one advances it by the latency injected into its calls, so a simulated run's timing is part of its
/// seed, not of the machine it runs on.
public final class SimulatedClock: StorageClock {
    private let origin = ContinuousClock.now
    private let elapsed = Mutex(Duration.zero)

    public init() {}

    public var now: ContinuousClock.Instant { origin + elapsed.withLock { $0 } }

    /// Time since the clock was made.
    public var elapsedTime: Duration { elapsed.withLock { $0 } }

    /// A sleep on simulated time returns at once, with the clock moved on by `duration`.
    public func sleep(for duration: Duration) {
        if duration > .zero { advance(by: duration) }
    }

    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a simulated clock never goes back")
        elapsed.withLock { $0 += duration }
    }
}
