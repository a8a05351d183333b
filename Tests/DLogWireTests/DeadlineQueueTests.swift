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
}
