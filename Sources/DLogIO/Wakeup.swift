import Foundation

/// A thread's sleep until a deadline or until someone has news for it: the background threads' timer. A
/// signal given while the thread is busy is kept, so the next wait returns at once and no news is lost between
/// deciding to sleep and sleeping. Before, the threads polled (every 10 and 50 ms), waking about 120 times a
/// second on an idle bookie.
public final class Wakeup: @unchecked Sendable {
    // Safe to share between threads: NSCondition is a pthread mutex and condition variable, made for that but
    // not marked Sendable, and `signalled` is read and written only between its lock() and unlock().
    private let condition = NSCondition()
    private var signalled = false

    public init() {}

    /// Wakes the waiting thread, or the next wait if none is waiting now.
    public func signal() {
        condition.lock()
        signalled = true
        condition.signal()
        condition.unlock()
    }

    /// Sleeps until signalled or until `deadline` (nil: until signalled), and takes the signal. Returns true when
    /// woken by a signal.
    @discardableResult
    public func wait(until deadline: ContinuousClock.Instant?) -> Bool {
        condition.lock()
        defer {
            signalled = false
            condition.unlock()
        }
        while !signalled {
            guard let deadline else {
                condition.wait()
                continue
            }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            let (seconds, attoseconds) = left.components
            _ = condition.wait(until: Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) / 1e18))
        }
        return true
    }
}
