import CDLogSys

public enum Memory {
    /// Hands the allocator's free pages back to the system (glibc `malloc_trim`). After a burst the allocator
    /// keeps what it freed, so a bookie that filled and flushed a million ledgers' worth of cache and index
    /// stayed at over 300 MB of RSS while idle; this costs a walk of the heap, so call it when work has stopped,
    /// not per request. Returns true if any memory was released.
    @discardableResult
    public static func returnFreedToSystem() -> Bool { dlog_malloc_trim() == 1 }
}
