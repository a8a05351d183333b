#if canImport(Glibc)
import Glibc
#endif

/// A value behind a glibc mutex, for a lock that several threads want at once: a ledger shard's, which both
/// event loops take for every run of adds and the journal's thread for every durable batch.
///
/// The standard library's `Mutex` is a priority-inheritance futex on Linux. Under contention, each waiter spins
/// and then sleeps in the kernel, and each unlock hands the lock to the sleeper, which must be scheduled before any
/// thread can take it again. A glibc mutex lets a running thread take a lock just released instead. With the shard
/// lock on `Mutex`, its slow path was 7% of a bookie's CPU at 32 × 16 adds of 100 B; on this lock the bookie's CPU
/// per add fell by 7-9% (docs/storage.md, "CPU per add").
///
/// Why the unchecked Sendable conformance is safe: `value` is read and written only inside `withLock`, with the
/// mutex held; the mutex lives in an allocation of its own, so its address never moves.
final class PlainMutex<Value>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    init(_ value: sending Value) {
        self.value = value
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        #if DEBUG
        // A thread that takes the lock it holds gets an error, which traps below, instead of hanging.
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ERRORCHECK))
        #endif
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        let locked = pthread_mutex_lock(mutex)
        precondition(locked == 0, "pthread_mutex_lock failed: \(locked)")
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
