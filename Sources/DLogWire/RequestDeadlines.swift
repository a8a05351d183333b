import NIOCore

/// The answer deadlines of a connection's requests, by request id, served by one event-loop timer armed for the
/// earliest. A request answered in time leaves at once (`answered`), so only requests in flight are kept, whatever
/// their timeouts: a firing looks at those (few: the requests in flight on one connection) and arms the timer for
/// the earliest left. A timer per request instead was armed and cancelled for every read and long poll, and
/// NIO's cancel searches the loop's whole timer heap.
///
/// A value confined to its connection's event loop; its owner arms the timer where `add` and `fire` say.
/// Expiry may come late by up to `coalescing` (never early): firings are at least that far apart.
public struct RequestDeadlines<Element> {
    private var waiting: [UInt64: (deadline: NIODeadline, element: Element)] = [:]
    /// The deadline the timer is armed for (nil: no timer).
    public private(set) var armedFor: NIODeadline?
    public let coalescing: TimeAmount

    public init(coalescing: TimeAmount = .milliseconds(5)) {
        precondition(coalescing >= .zero, "coalescing must not be negative")
        self.coalescing = coalescing
    }

    /// Requests waiting for their answer.
    public var count: Int { waiting.count }

    /// Request `id` must be answered by `deadline`. Returns the deadline to arm the timer for, when it must be
    /// armed (again): none is, or the armed one comes later than this deadline plus `coalescing`.
    public mutating func add(_ id: UInt64, _ element: Element, by deadline: NIODeadline) -> NIODeadline? {
        waiting[id] = (deadline, element)
        if let armed = armedFor, armed <= deadline + coalescing { return nil }
        armedFor = deadline
        return deadline
    }

    /// Request `id` was answered (or failed otherwise): it no longer waits. The timer stays as it is; a firing
    /// that finds nothing due arms it for the earliest left.
    public mutating func answered(_ id: UInt64) {
        // Most answers (adds) had no deadline here: not even a hash for them.
        guard !waiting.isEmpty else { return }
        waiting.removeValue(forKey: id)
    }

    /// The timer fired at `now`: the requests past their deadline (no longer kept), earliest first, and the
    /// deadline to arm the timer for next (nil when none waits).
    public mutating func fire(now: NIODeadline) -> (due: [(id: UInt64, element: Element)], next: NIODeadline?) {
        var due: [(id: UInt64, deadline: NIODeadline, element: Element)] = []
        var earliest: NIODeadline?
        for (id, entry) in waiting {
            if entry.deadline <= now {
                due.append((id, entry.deadline, entry.element))
            } else if earliest.map({ entry.deadline < $0 }) ?? true {
                earliest = entry.deadline
            }
        }
        for d in due { waiting.removeValue(forKey: d.id) }
        armedFor = earliest.map { max($0, now + coalescing) }
        return (due.sorted { $0.deadline < $1.deadline }.map { ($0.id, $0.element) }, armedFor)
    }

    /// The connection closed: nothing waits any more, and no timer.
    public mutating func removeAll() {
        waiting.removeAll()
        armedFor = nil
    }
}
