/// When a bookie of a writer's ensemble is so much slower than the others that it should be replaced.
///
/// A lossy link or a sick disk rarely makes a bookie fail a request outright: its adds just take long (TCP
/// retransmits, a slow sync), and with an ack quorum the writer keeps going at the pace its slowest needed
/// bookie allows, while the adds it must keep for that bookie pile up. So the writer times every add's answer
/// per ensemble position, and this value decides, with no I/O and no clock of its own:
///
/// | rule | why |
/// |---|---|
/// | a position is judged only once it has `samplesMin` recent answers, and so is at least one other | no verdict from a handful of answers, or with nothing to compare to |
/// | its median answer time must reach `floor` | a bookie that answers fast enough is never replaced, however the others do |
/// | and be at least `factor` times the median of the other positions' medians | slow *relative to its peers*: a loaded cluster slows every bookie alike |
/// | of several such positions, the slowest is named | one replacement at a time |
/// | after a verdict, no other for `quietPeriod`; every position starts afresh | the new ensemble is measured anew; no flapping |
/// | positions are judged at most every `checkInterval` | a verdict costs a sort per position: not on every answer |
///
/// Only the last `samplesMax` answers of each position count, so a bookie that recovers is judged by how it
/// does now.
public struct SlowBookiePolicy: Sendable {
    public struct Settings: Sendable, Equatable {
        public var factor: Double = 8
        public var floor: Duration = .milliseconds(100)
        public var samplesMin = 16
        public var samplesMax = 64
        public var quietPeriod: Duration = .seconds(30)
        public var checkInterval: Duration = .milliseconds(250)
        public init() {}
    }

    public let settings: Settings
    private var samples: [[Duration]]
    private var next: [Int]
    private var quietUntil: ContinuousClock.Instant?
    private var nextCheck: ContinuousClock.Instant?

    public init(positions: Int, settings: Settings = Settings()) {
        precondition(positions >= 1 && settings.samplesMin >= 1 && settings.samplesMax >= settings.samplesMin
                     && settings.factor > 1)
        self.settings = settings
        samples = Array(repeating: [], count: positions)
        next = Array(repeating: 0, count: positions)
    }

    /// Records how long the bookie at `position` took to answer an add.
    public mutating func record(_ latency: Duration, position: Int) {
        precondition(samples.indices.contains(position))
        if samples[position].count < settings.samplesMax {
            samples[position].append(latency)
        } else {
            samples[position][next[position]] = latency
            next[position] = (next[position] + 1) % settings.samplesMax
        }
    }

    /// The position to replace now, with its median and the others', or nil.
    public mutating func verdict(now: ContinuousClock.Instant) -> (position: Int, median: Duration, others: Duration)? {
        if let quietUntil, now < quietUntil { return nil }
        if let nextCheck, now < nextCheck { return nil }
        nextCheck = now + settings.checkInterval
        let medians = samples.map { $0.count >= settings.samplesMin ? Self.median($0) : nil }
        var worst: (position: Int, median: Duration, others: Duration)? = nil
        for (position, median) in medians.enumerated() {
            guard let median, median >= settings.floor else { continue }
            let others = medians.enumerated().compactMap { $0.offset == position ? nil : $0.element }
            guard !others.isEmpty else { continue }
            let baseline = Self.median(others)
            guard median >= baseline * settings.factor else { continue }
            if worst.map({ median > $0.median }) ?? true { worst = (position, median, baseline) }
        }
        if worst != nil {
            quietUntil = now + settings.quietPeriod
            samples = samples.map { _ in [] }
            next = next.map { _ in 0 }
        }
        return worst
    }

    /// Forgets a position's answers (its bookie was replaced).
    public mutating func reset(position: Int) {
        samples[position] = []
        next[position] = 0
    }

    static func median(_ values: [Duration]) -> Duration {
        precondition(!values.isEmpty)
        let sorted = values.sorted()
        return sorted[sorted.count / 2]
    }
}
