import DLogWire
import NIOCore
import Testing

@Suite struct DeadlineQueueTests {
    /// Elements come out in deadline order whatever order they came in; the timer is armed again only for a
    /// deadline earlier than the armed one by more than the coalescing; a firing takes what is due and never
    /// arms the next sooner than the coalescing from now.
    @Test func elementsFallDueInDeadlineOrderFromOneTimer() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let ms = { (n: Int64) in TimeAmount.milliseconds(n) }
        var queue = DeadlineQueue<Int>(coalescing: .milliseconds(5))
        #expect(queue.add(1, at: t0 + ms(300)) == t0 + ms(300), "the first arms the timer")
        #expect(queue.add(2, at: t0 + ms(400)) == nil, "a later one needs no timer of its own")
        #expect(queue.add(3, at: t0 + ms(298)) == nil, "within the coalescing: the timer stays")
        #expect(queue.add(4, at: t0 + ms(100)) == t0 + ms(100), "much earlier: armed again")
        #expect(queue.add(5, at: t0 + ms(200)) == nil)
        #expect(queue.waiting.map(\.element) == [4, 5, 3, 1, 2])

        let first = queue.fire(now: t0 + ms(100))
        #expect(first.due == [4])
        #expect(first.next == t0 + ms(200))
        // Late by 150 ms: everything due by then goes at once.
        let second = queue.fire(now: t0 + ms(350))
        #expect(second.due == [5, 3, 1])
        #expect(second.next == t0 + ms(400))
        // The last is due 1 ms from now: the next firing comes no sooner than the coalescing allows.
        let early = queue.fire(now: t0 + ms(399))
        #expect(early.due.isEmpty)
        #expect(early.next == t0 + ms(399) + queue.coalescing)
        #expect(queue.removeAll() == [2])
        #expect(queue.isEmpty && queue.armedFor == nil)
        #expect(queue.add(6, at: t0 + ms(500)) == t0 + ms(500), "after removeAll, an element arms anew")
        let last = queue.fire(now: t0 + ms(500))
        #expect(last.due == [6] && last.next == nil)
    }

    /// A deadline inserted behind many later ones keeps the order (a binary search finds its place).
    @Test func aShortWaitAfterManyLongOnesKeepsTheOrder() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var queue = DeadlineQueue<Int>()
        for n in 0..<1000 { _ = queue.add(n, at: t0 + .milliseconds(5000 + Int64(n))) }
        #expect(queue.add(-1, at: t0 + .milliseconds(250)) == t0 + .milliseconds(250))
        _ = queue.add(1000, at: t0 + .milliseconds(5500))
        #expect(queue.waiting.map(\.deadline) == queue.waiting.map(\.deadline).sorted())
        #expect(queue.waiting.first?.element == -1)
        #expect(queue.waiting[501].element == 500 && queue.waiting[502].element == 1000)
    }

    /// Dropping the elements that need no expiry any more keeps the rest in order, and the timer as it was.
    @Test func droppingDoneElementsKeepsTheOrder() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var queue = DeadlineQueue<Int>()
        for n in 0..<10 { _ = queue.add(n, at: t0 + .milliseconds(Int64(100 * n))) }
        let armed = queue.armedFor
        queue.removeAll { $0 % 3 == 0 }
        #expect(queue.waiting.map(\.element) == [1, 2, 4, 5, 7, 8])
        #expect(queue.count == 6 && queue.armedFor == armed)
        #expect(queue.fire(now: t0 + .milliseconds(450)).due == [1, 2, 4])
    }
}

@Suite struct RequestDeadlinesTests {
    /// Requests answered in time leave at once; a firing fails only those past their deadline, earliest first,
    /// and arms the timer for the earliest left (never sooner than the coalescing from now); a request with a
    /// shorter wait than the armed one arms the timer again.
    @Test func onlyUnansweredRequestsFallDue() {
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let ms = { (n: Int64) in TimeAmount.milliseconds(n) }
        var deadlines = RequestDeadlines<String>(coalescing: .milliseconds(5))
        #expect(deadlines.add(1, "poll", by: t0 + ms(5500)) == t0 + ms(5500))
        #expect(deadlines.add(2, "read", by: t0 + ms(250)) == t0 + ms(250), "a shorter wait arms the timer again")
        #expect(deadlines.add(3, "read", by: t0 + ms(252)) == nil)
        #expect(deadlines.add(4, "read", by: t0 + ms(247)) == nil, "within the coalescing")
        deadlines.answered(2)
        deadlines.answered(99)
        #expect(deadlines.count == 3)
        let first = deadlines.fire(now: t0 + ms(250))
        #expect(first.due.map(\.id) == [4], "2 was answered, 3 is not due yet")
        #expect(first.next == t0 + ms(255), "3 falls due within the coalescing: no sooner than it")
        let second = deadlines.fire(now: t0 + ms(255))
        #expect(second.due.map(\.id) == [3])
        #expect(second.next == t0 + ms(5500))
        deadlines.answered(1)
        let third = deadlines.fire(now: t0 + ms(5500))
        #expect(third.due.isEmpty && third.next == nil && deadlines.count == 0)
        #expect(deadlines.add(5, "read", by: t0 + ms(6000)) == t0 + ms(6000), "with none armed, the next arms")
        deadlines.removeAll()
        #expect(deadlines.count == 0 && deadlines.armedFor == nil)
    }
}
