import NIOCore

/// The one timer a connection's handler arms for the earliest of its deadlines (`DeadlineQueue`,
/// `RequestDeadlines`): arming again cancels the one armed before, and a timer that fired is forgotten before
/// its work runs, so re-arming from that work cancels nothing (NIO's cancel searches the loop's whole timer heap).
/// Confined to its handler's event loop. While armed, its work (and what that holds, the handler) stays alive.
public final class LoopTimer {
    private var scheduled: Scheduled<Void>?

    public init() {}

    /// Arms the timer for `deadline` on `loop`, which must be the caller's: `fire` runs there.
    public func arm(at deadline: NIODeadline, on loop: EventLoop, _ fire: @escaping () -> Void) {
        scheduled?.cancel()
        let bound = NIOLoopBound((self, fire), eventLoop: loop)
        scheduled = loop.scheduleTask(deadline: deadline) {
            let (timer, fire) = bound.value
            timer.scheduled = nil
            fire()
        }
    }

    /// The connection closed: no timer, and nothing held.
    public func cancel() {
        scheduled?.cancel()
        scheduled = nil
    }
}
