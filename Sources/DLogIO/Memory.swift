import CDLogSys

public enum Memory {
    /// Hands the allocator's free pages back to the system (glibc `malloc_trim`). After a burst the allocator
    /// keeps what it freed, so a bookie that filled and flushed a million ledgers' worth of cache and index
    /// stayed at over 300 MB of RSS while idle; this costs a walk of the heap, so call it when work has stopped,
    /// not per request. Returns true if any memory was released.
    @discardableResult
    public static func returnFreedToSystem() -> Bool { dlog_malloc_trim() == 1 }

    /// How many arenas the allocator may make, as `limitArenas` chose it.
    public enum ArenaLimit: Equatable, Sendable {
        /// Set to this many.
        case limited(Int)
        /// Left to the environment's MALLOC_ARENA_MAX, which glibc reads itself.
        case fromEnvironment(String)
        /// The allocator refused the setting.
        case refused
    }

    /// The most arenas a daemon's allocator should have on `cores` cores: glibc makes up to 8 per core, one per
    /// thread that allocates while another holds an arena. What one arena freed the others cannot reuse, so a
    /// bookie that filled a million ledgers' cache and index through several threads stayed at 290 MB idle,
    /// where two arenas left it at 187 MB (and a restart at 181 MB). Per-thread caches keep small allocations
    /// off the arena locks, and two arenas measured the same CPU per add as the default.
    public static func arenaLimit(cores: Int) -> Int { min(max(cores, 2), 4) }

    /// Limits the allocator's arenas (glibc `M_ARENA_MAX`) to `arenaLimit(cores:)`, unless MALLOC_ARENA_MAX is set
    /// in `environment` (the operator's choice wins). Call first thing in the process, before threads start.
    @discardableResult
    public static func limitArenas(cores: Int, environment: [String: String]) -> ArenaLimit {
        if let chosen = environment["MALLOC_ARENA_MAX"] { return .fromEnvironment(chosen) }
        let count = arenaLimit(cores: cores)
        return dlog_malloc_arena_max(Int32(count)) == 1 ? .limited(count) : .refused
    }
}
