import CDLogSys

public enum Memory {
    /// The allocator that serves this process's malloc.
    public enum Allocator: Equatable, Sendable {
        /// jemalloc, which `dlogd` and `dlog-bench` link. Under glibc's malloc a proxy draining 100,000 streams
        /// spent over a third of its CPU in arena locks and in consolidating freed chunks (docs/storage.md,
        /// "Memory allocator").
        case jemalloc(version: String)
        /// Another malloc, named by the library that defines it: glibc's in a process that does not link
        /// jemalloc (the test runners, a program using the libraries).
        case other(library: String)
    }

    /// Which allocator serves malloc here, asked of the process itself (not assumed from how it was linked), once:
    /// it cannot change while the process runs.
    public static let allocator: Allocator = {
        if let version = dlog_jemalloc_version() { return .jemalloc(version: String(cString: version)) }
        return .other(library: dlog_malloc_library().map { String(cString: $0) } ?? "unknown")
    }()

    /// Hands the allocator's free pages back to the system: a purge of every jemalloc arena, or glibc's
    /// `malloc_trim`. After a burst the allocator keeps what it freed, so a bookie that filled and flushed a
    /// million ledgers' worth of cache and index stayed at over 300 MB of RSS while idle; this costs a walk of
    /// the heap, so call it when work has stopped, not per request. Returns true if the allocator released
    /// memory (glibc) or ran the purge (jemalloc does not say how much it released).
    @discardableResult
    public static func returnFreedToSystem() -> Bool {
        switch allocator {
        case .jemalloc: dlog_jemalloc_purge() == 1
        case .other: dlog_malloc_trim() == 1
        }
    }
}
