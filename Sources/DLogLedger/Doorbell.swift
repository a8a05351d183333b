import DLogMetadata
import Synchronization

/// Wakes a task that waits for something to change, without counting the changes: a ring while nobody waits is
/// kept (one), so the next wait returns at once; a wait also ends at its timeout or when its task is cancelled.
/// A replication worker and the auditor wait on one between rounds, rung by their watches (`ring(onChangesTo:)`).
public final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var next: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Wakes every task waiting now, or else the next one to wait.
    public func ring() {
        let woken = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard !s.waiters.isEmpty else {
                s.rung = true
                return []
            }
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns at the first ring since the last wait returned, or after `timeout`, or when the task is cancelled.
    public func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.waitForRing() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRing() async {
        let id = state.withLock { s in
            s.next += 1
            return s.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { waiter in
                // Under the lock, so a cancellation either finds this waiter or is seen here.
                let now = state.withLock { s -> Bool in
                    if s.rung {
                        s.rung = false
                        return true
                    }
                    if Task.isCancelled { return true }
                    s.waiters[id] = waiter
                    return false
                }
                if now { waiter.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

extension Doorbell {
    /// Rings at every change under any of `ranges` of `store`, until the task it returns is cancelled. A watch that
    /// breaks (metadata unreachable) is made again after `retry`; meanwhile the waiter's own timeout stands in.
    public func ring(onChangesTo ranges: [KeyRange], in store: any MetadataStore, retry: Duration) -> Task<Void, Never> {
        Task {
            await withTaskGroup(of: Void.self) { group in
                for range in ranges {
                    group.addTask {
                        while !Task.isCancelled {
                            do {
                                for try await _ in store.watch(range, from: .zero) { self.ring() }
                            } catch {
                                // Cancelled, or metadata unreachable for good: made again below unless cancelled.
                            }
                            try? await Task.sleep(for: retry)
                        }
                    }
                }
            }
        }
    }
}
