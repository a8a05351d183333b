@testable import DistributedLog
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// The log writer's core driven by seeded random events (writes, confirmations in any order, metadata steps
/// that succeed or fail, truncations, flushes, closes, a lost lease) against a model of its surroundings,
/// checking after every step that acknowledgements come in DLSN order, only for confirmed entries and for the
/// record actually in that slot, that a lost lease fails everything pending, and that no segment starts while
/// another is open. A failure prints its seed; `LogWriterCoreTests.replay` runs one seed alone.
@Suite struct LogWriterCoreTests {
    typealias Core = LogWriterCore<Int, Int, Int>

    @Test func randomEventSequencesKeepTheWritersInvariants() throws {
        // DLOG_SEED=N replays the one seed a failure printed.
        let seeds = ProcessInfo.processInfo.environment["DLOG_SEED"].flatMap(UInt64.init).map { $0...$0 } ?? 0...299
        var covered = World.Coverage()
        for seed in seeds {
            var world = World(seed: seed)
            try world.run(steps: 400)
            covered.add(world.covered)
        }
        // The runs reach every path the invariants speak of, many times over.
        if seeds.count > 1 {
            #expect(covered.rolls > 300 && covered.rewrittenRecords > 10 && covered.leasesLost > 30 && covered.sealed > 10
                    && covered.injectedFailures > 30 && covered.acknowledged > 10_000, "\(covered)")
        }
    }

    @Test func losingTheLeaseFailsEveryPendingWriteWithOwnershipLost() throws {
        // Proves, step by step, the rule the random runs check: records buffered and in flight all fail with
        // "ownership lost", a confirmation arriving after it acknowledges nothing, and later writes are refused.
        var core = Core(name: "l", limits: .init(entriesInFlightMax: 1, entryBytesMax: 1 << 20, bufferedBytesMax: 1 << 20,
                                                 segmentBytesMax: 1 << 30, segmentAgeMax: .seconds(3600), compression: .none),
                        info: LogInfo(creationTime: 1), infoVersion: Version(1), txidFloor: -1, nextStartSequenceID: 0)
        var actions = core.handle(.write([[.init(txid: 1, payload: [1], waiter: 1)]], now: 0))
        guard case .startSegment(let info, _, var segment) = actions.first else { Issue.record("\(actions)"); return }
        segment.ledger = LedgerID(9)
        actions = core.handle(.segmentStarted(segment, 9, info: info, version: Version(2), at: .now))
        #expect(actions.count == 1 && core.entriesInFlight == 1)
        _ = core.handle(.write([[.init(txid: 2, payload: [2], waiter: 2), .init(txid: 3, payload: [3], waiter: 3)]],
                               now: 0))
        #expect(core.recordsBuffered == 2)
        actions = core.handle(.failed(.ownershipLost("l", "lease 7 expired")))
        guard case .fail(let failed, let error) = actions.first else { Issue.record("\(actions)"); return }
        #expect(Set(failed) == [1, 2, 3] && error == .ownershipLost("l", "lease 7 expired"))
        #expect(core.handle(.entryConfirmed(sequence: segment.sequence, index: 0, entry: EntryID(0), at: .now)).isEmpty)
        actions = core.handle(.write([[.init(txid: 4, payload: [4], waiter: 4)]], now: 0))
        guard case .fail([4], .ownershipLost) = actions.first else { Issue.record("\(actions)"); return }
    }

    @Test func callsTakenInOneEventGoOutInOneEntryAndARefusedCallFailsAlone() throws {
        // Proves what a proxy relies on when it hands over every write one read brought: the calls' records go
        // out as one entry through the free slot (not the first call alone, the rest behind it), and a call
        // refused for its txid fails only its own records.
        let limits = Core.Limits(entriesInFlightMax: 2, entryBytesMax: 1 << 20, bufferedBytesMax: 1 << 20,
                                 segmentBytesMax: 1 << 30, segmentAgeMax: .seconds(3600), compression: .none)
        var core = Core(name: "l", limits: limits, info: LogInfo(creationTime: 1), infoVersion: Version(1),
                        txidFloor: -1, nextStartSequenceID: 0)
        var actions = core.handle(.write([[.init(txid: 1, payload: [1], waiter: 1)]], now: 0))
        guard case .startSegment(let info, _, var segment) = actions.first else { Issue.record("\(actions)"); return }
        segment.ledger = LedgerID(9)
        _ = core.handle(.segmentStarted(segment, 9, info: info, version: Version(2), at: .now))
        #expect(core.entriesInFlight == 1)
        actions = core.handle(.write([[.init(txid: 5, payload: [2], waiter: 2)],
                                      [.init(txid: 3, payload: [3], waiter: 3)],
                                      [.init(txid: 6, payload: [4], waiter: 4),
                                       .init(txid: 7, payload: [5], waiter: 5)]], now: 0))
        let sent = actions.compactMap { action -> Int? in
            if case .send(_, _, _, _, let records) = action { records } else { nil }
        }
        #expect(sent == [3], "one entry of the three records taken: \(actions)")
        let failed = actions.compactMap { action -> [Int]? in
            if case .fail(let waiters, .txidOutOfOrder) = action { waiters } else { nil }
        }
        #expect(failed == [[3]], "\(actions)")
        #expect(core.entriesInFlight == 2 && core.recordsBuffered == 0)
    }
}

/// The core and a model of what surrounds it: the ledgers (which confirm entries, in any order of delivery), the
/// metadata store (segment records), and the writer's callers.
private struct World {
    typealias Core = LogWriterCoreTests.Core

    enum Pending {
        case start(LogInfo, Version, LogSegment)
        case confirm(sequence: Int64, index: Int64)
        case record(LogSegment, Version)
    }

    let seed: UInt64
    var rng: SeededGenerator
    var core: Core
    var clock = ContinuousClock.now
    var pending: [Pending] = []
    /// The metadata view: the segment in progress, and the last segment started.
    var openSegment: Int64?
    var lastSequence: Int64 = 0
    /// Waiter ids of the records in each sent entry, by (segment, index).
    var entries: [DLSNKey: [Int]] = [:]
    var confirmed: Set<DLSNKey> = []
    var sentBySegment: [Int64: Int64] = [:]
    var recordsBySegment: [Int64: Int64] = [:]
    var nextWaiter = 0
    var nextSignal = 0
    var unresolved: Set<Int> = []
    var resolved: Set<Int> = []
    var lastAcknowledged: (waiter: Int, dlsn: DLSN)?
    var openSignals: Set<Int> = []
    var closed = false
    var txid: Int64 = 0
    var version: Int64 = 1
    var covered = Coverage()
    var rewriting: Set<Int64> = []

    struct Coverage {
        var rolls = 0, rewrittenRecords = 0, leasesLost = 0, sealed = 0, injectedFailures = 0, acknowledged = 0

        mutating func add(_ other: Coverage) {
            rolls += other.rolls
            rewrittenRecords += other.rewrittenRecords
            leasesLost += other.leasesLost
            sealed += other.sealed
            injectedFailures += other.injectedFailures
            acknowledged += other.acknowledged
        }
    }

    struct DLSNKey: Hashable {
        var segment: Int64
        var index: Int64
    }

    init(seed: UInt64) {
        self.seed = seed
        rng = SeededGenerator(seed: seed)
        let limits = Core.Limits(entriesInFlightMax: Int.random(in: 1...3, using: &rng),
                                 entryBytesMax: Int.random(in: 60...400, using: &rng),
                                 bufferedBytesMax: Int.random(in: 200...3000, using: &rng),
                                 segmentBytesMax: Int64.random(in: 200...2000, using: &rng),
                                 segmentAgeMax: .milliseconds(Int64.random(in: 20...500, using: &rng)), compression: .none)
        core = Core(name: "p", limits: limits, info: LogInfo(creationTime: 1), infoVersion: Version(1), txidFloor: -1,
                    nextStartSequenceID: 0)
    }

    func check(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        if !condition { throw Violation(message: "seed \(seed): \(what())") }
    }

    struct Violation: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    mutating func run(steps: Int) throws {
        for _ in 0..<steps { try step() }
        // Whatever happened, everything settles: deliver every pending result, then close.
        try deliverAll()
        let close = nextSignal
        nextSignal += 1
        openSignals.insert(close)
        try apply(core.handle(.close(close)))
        try deliverAll()
        try check(openSignals.isEmpty, "flushes or closes never settled: \(openSignals)")
        try check(unresolved.isEmpty, "writes never resolved: \(unresolved.sorted())")
        try check(core.failure != nil, "a closed writer takes writes")
    }

    mutating func deliverAll() throws {
        var rounds = 0
        while !pending.isEmpty {
            rounds += 1
            try check(rounds < 100_000, "results never stop coming")
            try deliver(at: Int.random(in: 0..<pending.count, using: &rng), failing: false)
        }
    }

    mutating func step() throws {
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<35: try write()
        case 35..<75 where !pending.isEmpty:
            try deliver(at: Int.random(in: 0..<pending.count, using: &rng), failing: Int.random(in: 0..<150, using: &rng) == 0)
        case 75..<80:
            clock += .milliseconds(Int64.random(in: 1...100, using: &rng))
        case 80..<84:
            let signal = nextSignal
            nextSignal += 1
            openSignals.insert(signal)
            try apply(core.handle(.flush(signal)))
        case 84..<87:
            let segment = Int64.random(in: max(1, lastSequence - 1)...max(1, lastSequence), using: &rng)
            try apply(core.handle(.truncate(before: DLSN(segment: segment, entry: Int64.random(in: 0...3, using: &rng), slot: 0))))
        case 87 where Int.random(in: 0..<4, using: &rng) == 0:
            try loseTheLease()
        case 88 where Int.random(in: 0..<8, using: &rng) == 0:
            try seal()
        case 89 where Int.random(in: 0..<10, using: &rng) == 0:
            let signal = nextSignal
            nextSignal += 1
            openSignals.insert(signal)
            try apply(core.handle(.close(signal)))
        default:
            break
        }
    }

    /// One to three calls taken in one event (as a proxy hands over what one read brought), each of one to three
    /// records.
    mutating func write() throws {
        var calls: [[Core.Incoming]] = []
        for _ in 0..<Int.random(in: 1...3, using: &rng) { calls.append(call()) }
        try apply(core.handle(.write(calls, now: txid)))
    }

    mutating func call() -> [Core.Incoming] {
        var records: [Core.Incoming] = []
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let id = nextWaiter
            nextWaiter += 1
            // Mostly rising txids or none (the writer assigns one); now and then one that goes back.
            let given: Int64? = switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5: { txid += Int64.random(in: 0...3, using: &rng); return txid }()
            case 5: txid - Int64.random(in: 1...5, using: &rng)
            default: nil
            }
            var payload = withUnsafeBytes(of: Int64(id).bigEndian, Array.init)
            payload += [UInt8](repeating: 7, count: Int.random(in: 0...60, using: &rng))
            records.append(.init(txid: given, payload: payload, waiter: id))
            unresolved.insert(id)
        }
        return records
    }

    mutating func seal() throws {
        let id = nextWaiter
        nextWaiter += 1
        unresolved.insert(id)
        let marker = RecordBatch.Record(flags: RecordBatch.Record.control | RecordBatch.Record.endOfStream, txid: .max,
                                        payload: withUnsafeBytes(of: Int64(id).bigEndian, Array.init))
        try apply(core.handle(.endOfStream(marker, id)))
    }

    mutating func loseTheLease() throws {
        let failedBefore = core.failure
        covered.leasesLost += failedBefore == nil ? 1 : 0
        let actions = core.handle(.failed(.ownershipLost("p", "lease expired")))
        try apply(actions)
        try check(unresolved.isEmpty, "writes pending after the lease was lost: \(unresolved.sorted())")
        if failedBefore == nil {
            for case .fail(_, let error) in actions {
                try check(error == .ownershipLost("p", "lease expired"), "pending writes failed with \(error), not ownership lost")
            }
        }
        // And every later write is refused.
        let id = nextWaiter
        nextWaiter += 1
        unresolved.insert(id)
        let payload = withUnsafeBytes(of: Int64(id).bigEndian, Array.init)
        try apply(core.handle(.write([[.init(txid: nil, payload: payload, waiter: id)]], now: txid)))
        try check(!unresolved.contains(id), "a write after the lease was lost was taken")
    }

    /// Delivers one pending result: a ledger's confirmation, or a metadata step (which may fail).
    mutating func deliver(at position: Int, failing: Bool) throws {
        let result = pending.remove(at: position)
        let failure = LogError.busy("p", "injected failure")
        covered.injectedFailures += failing ? 1 : 0
        switch result {
        case .start(let info, _, var segment):
            if failing { return try apply(core.handle(.failed(failure))) }
            version += 1
            segment.ledger = LedgerID(UInt64(segment.sequence))
            segment.creationTime = 1
            try check(openSegment == nil, "segment \(segment.sequence) started while \(openSegment!) is open")
            openSegment = segment.sequence
            lastSequence = segment.sequence
            try apply(core.handle(.segmentStarted(segment, Int(segment.sequence), info: info, version: Version(version), at: clock)))
        case .confirm(let sequence, let index):
            if failing { return try apply(core.handle(.failed(.ledger("p", .bookieFailed(LedgerID(UInt64(sequence)), BookieID("b"), "gone"))))) }
            confirmed.insert(DLSNKey(segment: sequence, index: index))
            try apply(core.handle(.entryConfirmed(sequence: sequence, index: index, entry: EntryID(index), at: clock)))
        case .record(let record, _):
            if failing { return try apply(core.handle(.failed(failure))) }
            version += 1
            try check(record.state == .completed && record.recordCount == recordsBySegment[record.sequence, default: 0]
                      && record.lastEntry == sentBySegment[record.sequence, default: 0] - 1,
                      "segment \(record.sequence) completed as \(record)")
            openSegment = nil
            covered.rolls += 1
            covered.sealed += record.endOfStream ? 1 : 0
            try apply(core.handle(.segmentRecordWritten(record, version: Version(version))))
        }
    }

    /// Checks each action against the invariants and queues the results it asks for.
    mutating func apply(_ actions: [Core.Action]) throws {
        for action in actions {
            switch action {
            case .startSegment(let info, let infoVersion, let segment):
                try check(openSegment == nil && !pending.contains { if case .start = $0 { true } else { false } },
                          "a segment starts while segment \(openSegment ?? -1) is open")
                try check(segment.sequence == lastSequence + 1 && info.lastSegment == segment.sequence, "segment \(segment.sequence) after \(lastSequence)")
                pending.append(.start(info, infoVersion, segment))
            case .send(let ledger, let payload, let sequence, let index, _):
                try check(openSegment == sequence && ledger == Int(sequence), "an entry sent to segment \(sequence), not the open one")
                try check(index == sentBySegment[sequence, default: 0], "entry \(index) sent out of order")
                let inFlight = pending.filter { if case .confirm(sequence, _) = $0 { true } else { false } }.count
                try check(inFlight < core.limits.entriesInFlightMax, "more than \(core.limits.entriesInFlightMax) entries in flight")
                let batch = try RecordBatch.decode(payload)
                try check(batch.firstPosition == recordsBySegment[sequence, default: 0], "entry \(index) at position \(batch.firstPosition)")
                entries[DLSNKey(segment: sequence, index: index)] = batch.records.map { Int(Int64(bigEndianBytes: $0.payload.prefix(8))) }
                sentBySegment[sequence, default: 0] += 1
                recordsBySegment[sequence, default: 0] += Int64(batch.records.count)
                pending.append(.confirm(sequence: sequence, index: index))
            case .acknowledge(let done):
                for (waiter, dlsn) in done {
                    let key = DLSNKey(segment: dlsn.segment, index: dlsn.entry)
                    try check(confirmed.contains(key), "\(waiter) acknowledged at \(dlsn) before its entry was confirmed")
                    try check(entries[key].map { Int(dlsn.slot) < $0.count && $0[Int(dlsn.slot)] == waiter } == true,
                              "\(waiter) acknowledged at \(dlsn), which holds another record")
                    if let (previous, at) = lastAcknowledged {
                        try check(waiter > previous && dlsn > at, "\(waiter) at \(dlsn) acknowledged after \(previous) at \(at)")
                    }
                    lastAcknowledged = (waiter, dlsn)
                    covered.acknowledged += 1
                    try resolve(waiter)
                }
            case .fail(let waiters, _):
                for waiter in waiters { try resolve(waiter) }
            case .settle(let signals, _):
                for signal in signals {
                    try check(openSignals.remove(signal) != nil, "signal \(signal) settled twice")
                }
            case .completeSegment(let ledger, let record, let version):
                let sequence = record.sequence
                let sent = sentBySegment[sequence, default: 0]
                try check(ledger == Int(sequence) && (0..<sent).allSatisfy { confirmed.contains(DLSNKey(segment: sequence, index: $0)) },
                          "segment \(sequence) closed with entries in flight")
                rewriting.insert(sequence)
                pending.append(.record(record, version))
            case .writeSegmentRecord(let record, let version):
                // A second record for one segment: a truncation arrived while the first was written.
                covered.rewrittenRecords += rewriting.contains(record.sequence) ? 1 : 0
                rewriting.insert(record.sequence)
                pending.append(.record(record, version))
            case .applyRetention:
                break
            }
        }
    }

    mutating func resolve(_ waiter: Int) throws {
        try check(unresolved.remove(waiter) != nil && resolved.insert(waiter).inserted, "write \(waiter) resolved twice")
    }
}

private extension Int64 {
    init(bigEndianBytes bytes: ArraySlice<UInt8>) {
        self = bytes.reduce(0) { $0 << 8 | Int64($1) }
    }
}
