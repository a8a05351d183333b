import DequeModule
import NIOCore

/// Deadlines of a connection's requests (a bookie's long polls, a client's answers), kept in order and served
/// by one event-loop timer armed for the earliest. A timer per request put each into the loop's timer heap for
/// its whole wait: at thousands of requests a second that heap held thousands, each pushed and popped through
/// it, and NIO's cancel of any timer on that loop searched all of them. Here a request costs an append (its
/// deadline is nearly always the latest: one client asks the same wait again and again), and its expiry a pop.
/// Requests answered early are not removed: the owner finds them answered when they fall due. So it suits
/// requests whose answers the owner does not see (a bookie's long polls, answered by whichever add moves the
/// LAC); `RequestDeadlines` suits those it does.
///
/// A value confined to its connection's event loop; it holds the deadlines and elements, its owner arms the
/// timer where `add` and `fire` say. Expiry may come late by up to `coalescing` (never early): firings are at
/// least that far apart, however many deadlines fall between.
public struct DeadlineQueue<Element> {
    /// In deadline order.
    public private(set) var waiting = Deque<(deadline: NIODeadline, element: Element)>()
    /// The deadline the timer is armed for (nil: no timer).
    public private(set) var armedFor: NIODeadline?
    public let coalescing: TimeAmount

    public init(coalescing: TimeAmount = .milliseconds(5)) {
        precondition(coalescing >= .zero, "coalescing must not be negative")
        self.coalescing = coalescing
    }

    public var isEmpty: Bool { waiting.isEmpty }
    public var count: Int { waiting.count }

    /// Queues `element`, due at `deadline`. Returns the deadline to arm the timer for, when it must be armed
    /// (again): none is, or the armed one comes later than this deadline plus `coalescing`.
    public mutating func add(_ element: Element, at deadline: NIODeadline) -> NIODeadline? {
        if waiting.last.map({ $0.deadline <= deadline }) ?? true {
            waiting.append((deadline, element))
        } else {
            // After every deadline not later than this one: a binary search, as a shorter wait may come after
            // many longer ones.
            var (low, high) = (0, waiting.count)
            while low < high {
                let middle = (low + high) / 2
                if waiting[middle].deadline <= deadline { low = middle + 1 } else { high = middle }
            }
            waiting.insert((deadline, element), at: low)
        }
        if let armed = armedFor, armed <= deadline + coalescing { return nil }
        armedFor = deadline
        return deadline
    }

    /// The timer fired at `now`: the elements due by then, in deadline order, and the deadline to arm the timer
    /// for next (nil when none waits).
    public mutating func fire(now: NIODeadline) -> (due: [Element], next: NIODeadline?) {
        var due: [Element] = []
        while let first = waiting.first, first.deadline <= now { due.append(waiting.removeFirst().element) }
        armedFor = waiting.first.map { max($0.deadline, now + coalescing) }
        return (due, armedFor)
    }

    /// Drops the elements `isDone` says need no expiry any more (their order is kept, and the timer as it is):
    /// how an owner that does not see answers bounds what it keeps.
    public mutating func removeAll(where isDone: (Element) -> Bool) {
        waiting.removeAll { isDone($0.element) }
    }

    /// The connection closed: every element still queued, and no timer.
    public mutating func removeAll() -> [Element] {
        armedFor = nil
        defer { waiting.removeAll() }
        return waiting.map(\.element)
    }
}
