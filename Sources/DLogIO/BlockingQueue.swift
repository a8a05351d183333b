#if canImport(Glibc)
import Glibc
#endif
import DequeModule

/// A bounded multi-producer queue with one consumer thread that can sleep until work or a deadline.
/// Producers never block: a full queue refuses, so the caller can answer with back-pressure.
///
/// Why the unchecked Sendable conformance is safe: every mutable stored property is read and written only while `mutex` is held;
/// the pthread mutex and condition are made for use from many threads, and live in their own allocations
/// so their addresses never move.
public final class BlockingQueue<Element: Sendable>: @unchecked Sendable {
    // Internal but inlinable: the hot calls (offer, drain) are compiled into the caller's module for its element
    // type. Called across modules unspecialized, every Deque operation looked up generic metadata at run time:
    // about 5% of a bookie's CPU under load, inside the storage lock.
    @usableFromInline let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    @usableFromInline let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    @usableFromInline var items = Deque<Element>()
    @usableFromInline var bytes = 0
    /// Set once by `close()`; checked under the mutex so the consumer cannot miss it between its own check
    /// and going to sleep.
    @usableFromInline var closed = false
    @usableFromInline let weigh: @Sendable (Element) -> Int
    public let countMax: Int
    public let bytesMax: Int

    public init(countMax: Int, bytesMax: Int, weigh: @escaping @Sendable (Element) -> Int) {
        precondition(countMax > 0 && bytesMax > 0)
        self.countMax = countMax
        self.bytesMax = bytesMax
        self.weigh = weigh
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public enum Offer: Equatable {
        case accepted, full, closed
    }

    /// Adds all elements or none: `full` at the count or byte limit, `closed` after `close()`.
    /// `ignoringLimits` is for small elements that release work (a cancellation): never refused for space.
    @inlinable
    public func offer(_ elements: [Element], ignoringLimits: Bool = false) -> Offer {
        var w = 0
        // Weighed in place: binding each element (`for element in elements`) copied it, a retain and a release
        // of every reference it holds, per element offered.
        for i in elements.indices { w += weigh(elements[i]) }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if closed { return .closed }
        guard ignoringLimits || (items.count + elements.count <= countMax && (bytes + w <= bytesMax || items.isEmpty)) else {
            return .full
        }
        let wasEmpty = items.isEmpty
        items.append(contentsOf: elements)
        bytes += w
        if wasEmpty { pthread_cond_signal(condition) }
        return .accepted
    }

    /// `offer` of one element, without an array.
    @inlinable
    public func offer(_ element: Element) -> Offer {
        let w = weigh(element)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if closed { return .closed }
        guard items.count < countMax && (bytes + w <= bytesMax || items.isEmpty) else { return .full }
        let wasEmpty = items.isEmpty
        items.append(element)
        bytes += w
        if wasEmpty { pthread_cond_signal(condition) }
        return .accepted
    }

    /// Removes elements from the front while `take` accepts them. Never blocks.
    @inlinable
    public func drain(while take: (Element) -> Bool) -> [Element] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        var out: [Element] = []
        // The front is lent to `take` and `weigh` in place, then moved out: binding it to a local (`items.first`)
        // copied each element, a retain and a release of every reference it holds, under the queue's lock.
        while !items.isEmpty, take(items[items.startIndex]) {
            bytes -= weigh(items[items.startIndex])
            out.append(items.removeFirst())
        }
        return out
    }

    /// Moves elements from the front into `receive` while `take` accepts them. Never blocks. Each element is
    /// handed over, not copied: a consumer that keeps what it takes (the journal's batch) pays no retain and
    /// release per reference an element holds, as it does to copy from the array `drain(while:)` returns.
    @inlinable
    public func drain(while take: (Element) -> Bool, into receive: (consuming Element) -> Void) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while !items.isEmpty, take(items[items.startIndex]) {
            bytes -= weigh(items[items.startIndex])
            receive(items.removeFirst())
        }
    }

    @inlinable
    public var isEmpty: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return items.isEmpty
    }

    /// True once `close()` was called.
    public var isClosed: Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return closed
    }

    @inlinable
    public var count: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return items.count
    }

    /// Sleeps until the queue is non-empty, it is closed, or the deadline passes.
    public func waitForItems(until deadline: ContinuousClock.Instant?) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard items.isEmpty && !closed else { return }
        if let deadline {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let (sec, atto) = remaining.components
            var nanos = Int(now.tv_nsec) + Int(atto / 1_000_000_000)
            var secs = Int(now.tv_sec) + Int(sec) + nanos / 1_000_000_000
            nanos %= 1_000_000_000
            if secs < 0 { secs = 0 }
            var ts = timespec(tv_sec: secs, tv_nsec: nanos)
            pthread_cond_timedwait(condition, mutex, &ts)
        } else {
            pthread_cond_wait(condition, mutex)
        }
    }

    /// Wakes the consumer for good (shutdown): later waits return at once and later offers are refused.
    /// Queued items stay to be drained.
    public func close() {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}
