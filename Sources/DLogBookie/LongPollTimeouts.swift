import DequeModule
import DLogWire
import NIOCore

/// The timeouts of one connection's long polls, kept in deadline order and served by one event-loop timer, armed
/// for the earliest. A timer per poll put every poll into the loop's timer heap for its whole wait (answered
/// polls too, as nothing cancelled them): a tailing reader at thousands of entries a second kept thousands of
/// timers there, each pushed and popped through the heap, and every other timer's cancel on that loop searched
/// all of them. Here a poll costs an append, and its expiry a pop.
///
/// A value confined to its connection's event loop; it holds the deadlines and the replies, the handler arms
/// the timer. Expiry may come late by up to `coalescing` (never early): firings are at least that far apart,
/// however many polls fall due in between.
struct LongPollTimeouts {
    struct Waiting {
        var deadline: NIODeadline
        var ledger: LedgerID
        /// The bookie's watch token for the poll.
        var token: UInt64
        var reply: Bookie.Reply
    }

    /// In deadline order. Polls of one client ask the same wait, so a new one nearly always goes at the back.
    private(set) var waiting = Deque<Waiting>()
    /// The deadline the timer is armed for (nil: no timer).
    private(set) var armedFor: NIODeadline?

    static let coalescing = TimeAmount.milliseconds(5)

    var isEmpty: Bool { waiting.isEmpty }

    /// Queues a poll. Returns the deadline to arm the timer for, when it must be armed (again): none is, or the
    /// armed one comes later than this poll's deadline plus `coalescing`.
    mutating func add(_ poll: Waiting) -> NIODeadline? {
        var index = waiting.endIndex
        while index > waiting.startIndex, waiting[index - 1].deadline > poll.deadline { index -= 1 }
        waiting.insert(poll, at: index)
        if let armed = armedFor, armed <= poll.deadline + Self.coalescing { return nil }
        armedFor = poll.deadline
        return poll.deadline
    }

    /// The timer fired at `now`: the polls due by then, in deadline order, and the deadline to arm the timer for
    /// next (nil when none waits).
    mutating func fire(now: NIODeadline) -> (due: [Waiting], next: NIODeadline?) {
        var due: [Waiting] = []
        while let first = waiting.first, first.deadline <= now { due.append(waiting.removeFirst()) }
        armedFor = waiting.first.map { max($0.deadline, now + Self.coalescing) }
        return (due, armedFor)
    }

    /// The connection closed: every poll still queued, and no timer.
    mutating func removeAll() -> [Waiting] {
        armedFor = nil
        defer { waiting.removeAll() }
        return Array(waiting)
    }
}
