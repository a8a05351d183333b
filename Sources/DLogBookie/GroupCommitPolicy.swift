/// When the journal writes and syncs a batch. A pure value: the writer thread tells it what happened and asks
/// what to do next; it does no I/O and reads no clock, so every rule is unit-tested with made-up times.
///
/// Rules, in order:
///  1. A request is in flight and no more may be: wait for its completion. While it syncs, the next batch
///     accumulates.
///  2. Nothing pending: wait for the batch in flight if there is one, else idle until work arrives.
///  3. Pending bytes reached `bufferedBytesMax` (or the next record does not fit): flush (trigger `bytes`).
///  4. The oldest pending record waited `groupWaitMax`: flush (trigger `maxWait`).
///  5. The queue is empty and a request slot is free: flush now (trigger `queueEmpty`): waiting longer
///     would add latency and gain nothing. With one slot this means nothing is in flight; with more, the
///     next batch's write overlaps the sync of the one before.
///  6. Otherwise wait for more work, at most until the oldest record's deadline.
public struct GroupCommitPolicy: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var groupWaitMax: Duration
        public var bufferedBytesMax: Int
        public var maxInFlight: Int
        public init(groupWaitMax: Duration = .milliseconds(1), bufferedBytesMax: Int = 512 * 1024,
                    maxInFlight: Int = 1) {
            precondition(bufferedBytesMax > 0 && maxInFlight >= 1)
            self.groupWaitMax = groupWaitMax
            self.bufferedBytesMax = bufferedBytesMax
            self.maxInFlight = maxInFlight
        }
    }

    public enum Trigger: String, Sendable, CaseIterable {
        case maxWait, bytes, queueEmpty
    }

    public enum Action: Equatable, Sendable {
        case flush(Trigger)
        case awaitCompletion
        /// Wait for new work; `until` is the deadline of the oldest pending record, if any.
        case waitForWork(until: ContinuousClock.Instant?)
    }

    public let configuration: Configuration
    public private(set) var pendingBytes = 0
    public private(set) var pendingRecords = 0
    public private(set) var oldestPendingAt: ContinuousClock.Instant? = nil
    public private(set) var inFlight = 0

    public init(_ configuration: Configuration) { self.configuration = configuration }

    /// The same policy with at most `slots` requests in flight (what the engine supports).
    public func limited(toInFlight slots: Int) -> GroupCommitPolicy {
        var c = configuration
        c.maxInFlight = max(1, min(c.maxInFlight, slots))
        return GroupCommitPolicy(c)
    }

    public mutating func added(bytes: Int, at now: ContinuousClock.Instant) {
        precondition(bytes > 0)
        if pendingRecords == 0 { oldestPendingAt = now }
        pendingBytes += bytes
        pendingRecords += 1
    }

    /// `bufferFull`: the next queued record does not fit in the batch being built.
    public func next(now: ContinuousClock.Instant, queueEmpty: Bool, bufferFull: Bool = false) -> Action {
        if inFlight >= configuration.maxInFlight { return .awaitCompletion }
        guard pendingRecords > 0, let oldest = oldestPendingAt else {
            return inFlight > 0 ? .awaitCompletion : .waitForWork(until: nil)
        }
        if pendingBytes >= configuration.bufferedBytesMax || bufferFull { return .flush(.bytes) }
        let deadline = oldest + configuration.groupWaitMax
        if now >= deadline { return .flush(.maxWait) }
        if queueEmpty { return .flush(.queueEmpty) }
        // Work is in flight and more may come: complete what is in flight first, it frees a slot.
        if inFlight > 0 { return .awaitCompletion }
        return .waitForWork(until: deadline)
    }

    /// The pending batch was submitted.
    public mutating func flushed() {
        precondition(pendingRecords > 0 && inFlight < configuration.maxInFlight)
        pendingBytes = 0
        pendingRecords = 0
        oldestPendingAt = nil
        inFlight += 1
    }

    /// One submitted batch completed (durable or failed).
    public mutating func completed() {
        precondition(inFlight > 0)
        inFlight -= 1
    }
}
