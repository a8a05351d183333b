/// When the bookie's background thread checks its disks and checkpoints: a value with no I/O, no clock and no
/// thread of its own. The thread (the driver) feeds it a tick with the time and whether a checkpoint was asked
/// for, does the work it answers with, and reports how each checkpoint ended; `CheckpointRetry` decides when a
/// failing checkpoint may run again. So the timing is tested on made-up instants, not by waiting.
struct BackgroundSchedule {
    struct Work: Equatable {
        var checkDisks = false
        var checkpoint = false
        /// The checkpoint runs because it was asked for: the driver clears the ask before running it (an ask
        /// made meanwhile is answered by that checkpoint too, as it starts after).
        var takesAsk = false
    }

    let checkpointInterval: Duration
    let diskCheckInterval: Duration
    private var lastCheckpoint: ContinuousClock.Instant
    private var lastDiskCheck: ContinuousClock.Instant
    private var retry = CheckpointRetry()

    /// Disks are checked at the first tick; the first checkpoint comes an interval after `start`, or when asked.
    init(start: ContinuousClock.Instant, checkpointInterval: Duration, diskCheckInterval: Duration) {
        self.checkpointInterval = checkpointInterval
        self.diskCheckInterval = diskCheckInterval
        lastCheckpoint = start
        lastDiskCheck = start - diskCheckInterval
    }

    /// The work due at `now`. An ask made while a failing checkpoint backs off is not taken: it stays for the
    /// tick the back-off allows.
    mutating func next(now: ContinuousClock.Instant, checkpointAsked: Bool) -> Work {
        var work = Work()
        if now - lastDiskCheck >= diskCheckInterval {
            lastDiskCheck = now
            work.checkDisks = true
        }
        if retry.allows(now), checkpointAsked || now - lastCheckpoint >= checkpointInterval {
            lastCheckpoint = now
            work.checkpoint = true
            work.takesAsk = checkpointAsked
        }
        return work
    }

    /// When the next work is due, given whether a checkpoint is asked for now: the driver sleeps until then,
    /// or until news (an ask, a stop) wakes it. An ask is due at once, unless a failing checkpoint backs off.
    func nextDue(now: ContinuousClock.Instant, checkpointAsked: Bool) -> ContinuousClock.Instant {
        var checkpoint = checkpointAsked ? now : lastCheckpoint + checkpointInterval
        if let notBefore = retry.notBefore { checkpoint = max(checkpoint, notBefore) }
        return min(lastDiskCheck + diskCheckInterval, checkpoint)
    }

    /// A checkpoint the schedule asked for ended at `now`, failing with `error` or not (nil): what to log.
    mutating func checkpointEnded(_ error: String?, at now: ContinuousClock.Instant) -> CheckpointRetry.Report {
        retry.record(error, at: now)
    }

    /// Checkpoints failed in a row so far.
    var checkpointFailures: Int { retry.failures }
}
