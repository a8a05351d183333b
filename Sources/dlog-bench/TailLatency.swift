import DLogWire
import Histogram
import Synchronization

/// How long after its acknowledgement each record reaches a tailing reader. Whichever of the two instants
/// comes first waits for the other and is then dropped, so memory holds only records in flight, not every
/// record of the run.
final class TailLatency: Sendable {
    private struct State {
        var acked: [String: [DLSN: ContinuousClock.Instant]] = [:]
        var delivered: [String: [DLSN: ContinuousClock.Instant]] = [:]
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000)
        var records = 0

        mutating func record(_ acked: ContinuousClock.Instant, _ delivered: ContinuousClock.Instant) {
            // A reader may get a record a moment before its writer hears the acknowledgement: count 0.
            _ = histogram.record(delivered > acked ? micros(delivered - acked) : 0)
            records += 1
        }
    }

    private let state = Mutex(State())

    func acknowledged(_ stream: String, _ dlsn: DLSN, at instant: ContinuousClock.Instant) {
        state.withLock { s in
            if let delivered = s.delivered[stream]?.removeValue(forKey: dlsn) {
                s.record(instant, delivered)
            } else {
                s.acked[stream, default: [:]][dlsn] = instant
            }
        }
    }

    func delivered(_ stream: String, _ dlsn: DLSN, at instant: ContinuousClock.Instant) {
        state.withLock { s in
            if let acked = s.acked[stream]?.removeValue(forKey: dlsn) {
                s.record(acked, instant)
            } else {
                s.delivered[stream, default: [:]][dlsn] = instant
            }
        }
    }

    /// Every acknowledged record has reached its reader.
    var caughtUp: Bool { state.withLock { $0.acked.values.allSatisfy(\.isEmpty) } }

    var figures: (latency: LatencySummary, records: Int) {
        state.withLock { (LatencySummary($0.histogram), $0.records) }
    }
}
