@testable import DLogBookie
import Foundation
import Testing

@Suite struct PlainMutexTests {
    struct Refused: Error {}

    /// Threads that read, yield and write back under the lock lose no update: without the lock most of the
    /// yields would let another thread's write in between.
    @Test func updatesFromManyThreadsAreNeverLost() {
        let counter = PlainMutex(0)
        let threads = 4, rounds = 2_000
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for i in 0 ..< rounds {
                counter.withLock { value in
                    let read = value
                    if i % 8 == 0 { sched_yield() }
                    value = read + 1
                }
            }
        }
        #expect(counter.withLock { $0 } == threads * rounds)
    }

    /// A body's error comes out of `withLock` as is, with the lock released and the value as the body left it.
    @Test func anErrorLeavesTheLockFree() {
        let box = PlainMutex([1, 2])
        #expect(throws: Refused.self) {
            try box.withLock { value in
                value.append(3)
                throw Refused()
            }
        }
        #expect(box.withLock { $0 } == [1, 2, 3])
    }
}
