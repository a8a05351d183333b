#if canImport(Glibc)
import Glibc
#endif

/// How long each lease lives after the embedded store restarts.
///
/// A lease's holder stops acting as the owner once it could not renew for a whole TTL (`OwnershipLock`), and
/// every renewal the store granted happened in a batch whose wall-clock time was committed with it (the
/// `clock_ms` meta row). So after a restart a lease needs to live only until that time plus its TTL (plus a
/// margin for the reply's trip to the holder): past it, its holder has given it up. Before, every lease got
/// its full TTL again at restart, so taking over from a holder that died during an outage cost the outage
/// plus one full lease.
///
/// | case | the lease lives, from the restart |
/// |---|---|
/// | no time recorded (a store written before 0.7) | its full TTL, as before |
/// | the clock is behind the recorded time (it was set back) | its full TTL: the outage cannot be measured |
/// | otherwise | what is left of TTL + margin since the recorded time: between 0 (it expires at once) and its full TTL |
enum LeaseRestart {
    /// The meta row holding the wall-clock time of the last committed batch.
    static let metaName = "clock_ms"
    /// Covers the renewal's reply reaching the holder after the store granted it.
    static let marginMilliseconds: Int64 = 1000

    static func remaining(ttlSeconds: Int, recordedMilliseconds: Int64?, nowMilliseconds: Int64) -> Duration {
        precondition(ttlSeconds >= 1)
        let full = Int64(ttlSeconds) * 1000
        guard let recorded = recordedMilliseconds, recorded > 0, nowMilliseconds >= recorded else {
            return .milliseconds(full)
        }
        let left = recorded + full + marginMilliseconds - nowMilliseconds
        return .milliseconds(Swift.min(full, Swift.max(0, left)))
    }

    /// Wall-clock milliseconds since 1970: comparable across a restart, unlike a monotonic clock.
    static var nowMilliseconds: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
