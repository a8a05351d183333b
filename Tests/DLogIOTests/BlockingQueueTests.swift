import DLogIO
import Testing

@Suite struct BlockingQueueTests {
    /// An element holding a reference, weighed by its size, so a test can see whether the queue still holds it.
    struct Item: Sendable {
        final class Payload: Sendable {
            let size: Int
            init(size: Int) { self.size = size }
        }
        var id: Int
        var payload: Payload
    }

    private func queue(countMax: Int = 10, bytesMax: Int = 100) -> BlockingQueue<Item> {
        BlockingQueue(countMax: countMax, bytesMax: bytesMax) { $0.payload.size }
    }

    /// `drain(while:into:)` hands elements over in order and stops at the first one `take` refuses, which stays
    /// queued with everything behind it. What it hands over frees its share of the byte limit.
    @Test func drainIntoHandsOverInOrderAndStopsAtTheFirstRefused() {
        let q = queue()
        #expect(q.offer((0 ..< 4).map { Item(id: $0, payload: .init(size: 25)) }) == .accepted)
        #expect(q.offer(Item(id: 4, payload: .init(size: 1))) == .full, "the byte limit is reached")
        var taken: [Item] = []
        q.drain(while: { $0.id < 2 }, into: { taken.append($0) })
        #expect(taken.map(\.id) == [0, 1])
        #expect(q.count == 2)
        #expect(q.offer([Item(id: 4, payload: .init(size: 50))]) == .accepted, "two drained elements freed 50 bytes")
        #expect(q.offer(Item(id: 5, payload: .init(size: 1))) == .full)
        q.drain(while: { _ in true }, into: { taken.append($0) })
        #expect(taken.map(\.id) == [0, 1, 2, 3, 4])
        #expect(q.isEmpty)
        #expect(q.offer(Item(id: 5, payload: .init(size: 100))) == .accepted, "an empty queue holds no bytes")
    }

    /// What is handed over is no longer held by the queue: the consumer's is the only reference.
    @Test func drainedElementsAreNoLongerHeldByTheQueue() {
        let q = queue()
        #expect(q.offer(Item(id: 0, payload: .init(size: 10))) == .accepted)
        var taken: [Item] = []
        q.drain(while: { _ in true }, into: { taken.append($0) })
        #expect(isKnownUniquelyReferenced(&taken[0].payload))
        #expect(q.offer(Item(id: 1, payload: .init(size: 10))) == .accepted)
        var returned = q.drain(while: { _ in true })
        #expect(isKnownUniquelyReferenced(&returned[0].payload))
    }

    /// `drain(while:)` returns the same elements in the same order, and frees the same bytes.
    @Test func drainReturnsWhatTakeAccepts() {
        let q = queue(countMax: 3)
        #expect(q.offer((0 ..< 3).map { Item(id: $0, payload: .init(size: 10)) }) == .accepted)
        #expect(q.offer(Item(id: 3, payload: .init(size: 10))) == .full, "the count limit is reached")
        #expect(q.drain(while: { $0.id == 0 }).map(\.id) == [0])
        #expect(q.offer(Item(id: 3, payload: .init(size: 10))) == .accepted)
        #expect(q.drain(while: { _ in true }).map(\.id) == [1, 2, 3])
    }
}
