import DLogMetadata
import DLogWire
import Synchronization

/// Reads a ledger without disturbing its writer (no fencing): never past the last add confirmed, every entry
/// checked (CRC32C over header and payload, and the header naming this ledger and entry) before it is handed out.
/// A read goes to the first replica of the entry's write set; when it has not answered within the speculative
/// delay the next replica is asked too, and the first intact answer wins. A replica that fails or returns a
/// damaged entry is skipped for the next one, and a damaged one is reported (logged and counted).
public final class LedgerReader: Sendable {
    public struct Options: Sendable {
        /// How long a read waits for one replica before also asking the next; nil asks the next only after a
        /// failure. Short enough to hide one slow bookie, long enough not to double the reads of a healthy one.
        public var speculativeReadDelay: Duration? = .milliseconds(250)
        /// How long one replica may take to answer one read.
        public var readTimeout: Duration = .seconds(5)
        /// How long a tailing reader's long poll waits on one bookie before the rest of the ensemble is polled
        /// too (at once after a failure). The writer tells every bookie each new LAC, so one that lags is rare
        /// and waiting about this long on it costs little; polling all of them every time would cost each
        /// bookie a poll per entry.
        public var longPollSpreadDelay: Duration = .milliseconds(20)
        public init() {}
    }

    private struct State {
        var metadata: LedgerMetadata
        var lac: EntryID
        var damagedReplicas = 0
        /// The entry a long poll brought with the LAC (checked like a READ's answer), until it is read.
        var prefetched: (entry: EntryID, payload: [UInt8])?
    }

    public let id: LedgerID
    public let quorums: Quorums
    public let options: Options
    let pool: BookiePool
    private let state: Mutex<State>

    private init(id: LedgerID, quorums: Quorums, metadata: LedgerMetadata, lac: EntryID, pool: BookiePool,
                 options: Options) {
        self.id = id
        self.quorums = quorums
        self.pool = pool
        self.options = options
        state = Mutex(State(metadata: metadata, lac: lac))
    }

    /// Opens `id` for reading. A closed ledger reads up to its last entry; an open one up to the LAC its
    /// bookies report (refreshed by `refreshLastAddConfirmed`).
    public static func open(_ id: LedgerID, password: String, pool: BookiePool,
                            options: Options = Options()) async throws -> LedgerReader {
        guard let (metadata, _) = try await pool.cluster.ledger(id) else { throw LedgerError.noSuchLedger(id) }
        guard metadata.passwordHash == LedgerPassword(password).check else { throw LedgerError.wrongPassword(id) }
        guard let quorums = Quorums(metadata) else {
            throw LedgerError.badMetadata(id, "impossible quorums \(metadata.ensembleSize)/\(metadata.writeQuorum)/\(metadata.ackQuorum)")
        }
        let reader = LedgerReader(id: id, quorums: quorums, metadata: metadata,
                                  lac: metadata.state == .closed ? metadata.lastEntry : .none, pool: pool,
                                  options: options)
        if metadata.state != .closed { _ = try await reader.refreshLastAddConfirmed() }
        return reader
    }

    public var lastAddConfirmed: EntryID { state.withLock { $0.lac } }
    public var metadata: LedgerMetadata { state.withLock { $0.metadata } }
    /// Replicas that returned a damaged entry (each was skipped for another) since the reader was opened.
    public var damagedReplicas: Int { state.withLock { $0.damagedReplicas } }

    /// Asks the bookies of the last fragment, in parallel, for their LAC and keeps the highest: any LAC a bookie
    /// saw was confirmed by the writer, so reading up to it is safe. Returns once every bookie answered, or
    /// `lacGrace` after the first LAC arrived: a hung bookie costs that much, not a whole request timeout.
    @discardableResult
    public func refreshLastAddConfirmed() async throws -> EntryID {
        let (metadata, current) = state.withLock { s in (s.metadata, s.lac) }
        if metadata.state == .closed { return current }
        let bookies = metadata.fragments.last!.bookies
        enum Event: Sendable { case answer(Result<EntryID?, ReplicaFailure>), grace }
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        for bookie in bookies {
            Task {
                do {
                    let answer = try await pool.send(.readLAC(ledger: id, longPoll: nil), to: bookie, lane: id.rawValue,
                                                     timeout: options.readTimeout)
                    if case .lac(let lac, _) = answer { sink.yield(.answer(.success(lac))) } else { sink.yield(.answer(.success(nil))) }
                } catch {
                    sink.yield(.answer(.failure(ReplicaFailure(reason: "\(bookie): \(error)"))))
                }
            }
        }
        var best = current
        var answered = 0
        var reasons: [String] = []
        var grace: Task<Void, Never>?
        defer { grace?.cancel() }
        loop: for await event in events {
            switch event {
            case .grace:
                break loop
            case .answer(let result):
                answered += 1
                switch result {
                case .success(let lac?):
                    best = max(best, lac)
                    if grace == nil {
                        grace = Task {
                            guard (try? await Task.sleep(for: Self.lacGrace)) != nil else { return }
                            sink.yield(.grace)
                        }
                    }
                case .success(nil): break
                case .failure(let failure): reasons.append(failure.reason)
                }
                if answered == bookies.count { break loop }
            }
        }
        sink.finish()
        if reasons.count == bookies.count { throw LedgerError.lacUnavailable(id, reasons) }
        state.withLock { $0.lac = max($0.lac, best) }
        return best
    }

    /// How long a LAC refresh waits for the other bookies once one answered.
    static let lacGrace = Duration.milliseconds(100)

    /// Waits (at most `timeout`) until a bookie of the last fragment knows a LAC past `previous`; returns the
    /// LAC, unchanged when none came in time (then the metadata is read again, to notice a close). A closed
    /// ledger answers at once with its last entry.
    @discardableResult
    public func waitForLastAddConfirmed(after previous: EntryID, timeout: Duration) async throws -> EntryID {
        if metadata.state == .closed { return lastAddConfirmed }
        let ensemble = state.withLock { $0.metadata.fragments.last!.bookies }
        // One long poll, to a bookie that learns the next LAC first (one of the write set of the entry that
        // carries it); the others only if it fails, or has not answered within `longPollSpreadDelay`. A tailing
        // reader costs its bookies one poll per entry instead of one per replica.
        let first = quorums.writeSet(of: EntryID(max(0, previous.rawValue + 2)))
        let order = first.map { ensemble[$0] } + ensemble.indices.filter { !first.contains($0) }.map { ensemble[$0] }
        let millis = UInt32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        // The answer brings the entry after `previous` too when the bookie has it in memory: the next read of
        // a reader that keeps up is then already here.
        let poll = BookieRequest.readLAC(ledger: id, longPoll: .init(previous: previous, timeoutMilliseconds: millis, withEntry: true))
        let (pool, id, wait) = (pool, id, timeout + options.readTimeout)
        let next = EntryID(previous.rawValue + 1)
        let round = LACPoll(previous: previous, known: state.withLock { $0.lac }, bookies: order.count) { index, round in
            let bookie = order[index]
            pool.send(poll, to: bookie, lane: id.rawValue, timeout: wait) { answer in
                round.answered(self.lac(from: answer, bookie: bookie, next: next))
            }
        }
        let started = ContinuousClock.now
        let outcome = await round.run(spreadAfter: options.longPollSpreadDelay,
                                      on: pool.loop(toward: order[0], lane: id.rawValue))
        let (best, answered) = (outcome.best, outcome.answered)
        state.withLock { $0.lac = max($0.lac, best) }
        // Every bookie failed at once (unreachable, backing off): wait a little before the caller polls again,
        // rather than spin.
        if answered == 0, best <= previous {
            let pause = min(timeout, .milliseconds(250)) - (ContinuousClock.now - started)
            if pause > .zero { try await Task.sleep(for: pause) }
        }
        // No progress in a whole poll: only then ask metadata whether the ledger was closed (or its ensemble
        // changed), so metadata stays off the per-entry path.
        if best <= previous, let closedAt = try await refreshIfClosed() { return closedAt }
        return state.withLock { $0.lac }
    }

    /// The LAC a long poll's answer reports (nil: the bookie failed); keeps the entry it brought, checked.
    private func lac(from answer: Result<BookieResponse, any Error>, bookie: BookieID, next: EntryID) -> EntryID? {
        switch answer {
        case .success(.lac(let lac, _)):
            return lac
        case .success(.lacAndEntry(let lac, _, let bytes)) where lac >= next:
            if case .success(let payload) = checked(bytes, entry: next, from: bookie) {
                state.withLock { s in if s.prefetched.map({ $0.entry < next }) ?? true { s.prefetched = (next, payload) } }
            }
            return lac
        default:
            return nil
        }
    }

    /// Re-reads the metadata; when the ledger was closed meanwhile, adopts its last entry and returns it.
    private func refreshIfClosed() async throws -> EntryID? {
        if metadata.state == .closed { return lastAddConfirmed }
        guard let (fresh, _) = try await pool.cluster.ledger(id) else { throw LedgerError.noSuchLedger(id) }
        adopt(fresh)
        return fresh.state == .closed ? fresh.lastEntry : nil
    }

    /// Every entry from `first` on, in order, each once, as soon as it is confirmed; ends after the last entry
    /// once the ledger is closed. Never yields past the LAC.
    public func tail(from first: EntryID = EntryID(0), pollTimeout: Duration = .seconds(5)) -> AsyncThrowingStream<(EntryID, [UInt8]), any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                var next = first
                do {
                    while !Task.isCancelled {
                        let lac = lastAddConfirmed
                        if next <= lac {
                            continuation.yield((next, try await read(next)))
                            next = EntryID(next.rawValue + 1)
                            continue
                        }
                        if metadata.state == .closed { break }
                        try await waitForLastAddConfirmed(after: lac, timeout: pollTimeout)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The payload of `entry`, which must not be past the last add confirmed.
    public func read(_ entry: EntryID) async throws -> [UInt8] {
        let (metadata, lac, prefetched) = state.withLock { s -> (LedgerMetadata, EntryID, [UInt8]?) in
            guard s.prefetched?.entry == entry else { return (s.metadata, s.lac, nil) }
            defer { s.prefetched = nil }
            return (s.metadata, s.lac, s.prefetched!.payload)
        }
        guard entry.rawValue >= 0, entry <= lac else {
            throw LedgerError.beyondLastAddConfirmed(id, entry: entry, lac: lac)
        }
        if let prefetched { return prefetched }
        let started = LedgerMeters.now
        let replicas = writeSet(of: entry, in: metadata)
        let payload: [UInt8]
        do {
            payload = try await readAny(entry, from: replicas)
        } catch LedgerError.unreadable(_, _, let reasons) {
            // Healing may have moved the entry's copies since this reader read the metadata: a worker replaces a
            // bookie in the fragment, and the replaced bookie then drops its copies (docs/recovery.md). When the
            // metadata names other bookies now, they are asked; otherwise (or with metadata out of reach) the
            // failure stands.
            let found: LedgerMetadata?
            do {
                found = try await pool.cluster.ledger(id)?.metadata
            } catch {
                throw LedgerError.unreadable(id, entry, reasons)
            }
            guard let fresh = found else { throw LedgerError.noSuchLedger(id) }
            let moved = writeSet(of: entry, in: fresh)
            guard moved != replicas else { throw LedgerError.unreadable(id, entry, reasons) }
            adopt(fresh)
            payload = try await readAny(entry, from: moved)
        }
        pool.meters.read.recordNanoseconds(LedgerMeters.since(started))
        return payload
    }

    /// The bookies that hold `entry` according to `metadata`, in the order they are asked.
    private func writeSet(of entry: EntryID, in metadata: LedgerMetadata) -> [BookieID] {
        let bookies = metadata.fragment(for: entry).bookies
        return quorums.writeSet(of: entry).map { bookies[$0] }
    }

    /// Takes newer metadata: a closed ledger's last entry becomes the LAC (as `refreshIfClosed` does), so a
    /// reader that learns of the close this way never stops short of it. A ledger never reopens, so metadata of
    /// an open one, read by a call that raced a later one, never replaces a closed one's.
    private func adopt(_ fresh: LedgerMetadata) {
        state.withLock { s in
            guard s.metadata.state != .closed || fresh.state == .closed else { return }
            s.metadata = fresh
            if fresh.state == .closed { s.lac = max(s.lac, fresh.lastEntry) }
        }
    }

    /// The payloads of entries `first` through `last`, in order, which must not go past the last add confirmed.
    /// Up to `parallel` entries are read at once; the first entry that cannot be read fails the whole range,
    /// naming it.
    public func read(from first: EntryID, through last: EntryID, parallel: Int = 32) async throws -> [[UInt8]] {
        precondition(parallel >= 1, "parallel must be at least 1")
        let lac = lastAddConfirmed
        guard first.rawValue >= 0, first <= last else {
            throw LedgerError.invalidRange(id, first: first, last: last)
        }
        guard last <= lac else { throw LedgerError.beyondLastAddConfirmed(id, entry: last, lac: lac) }
        // One entry (a tailing reader's usual step): read it here, without a task group.
        if first == last { return [try await read(first)] }
        if let batch = await readBatch(from: first, through: last) {
            var payloads: [[UInt8]] = []
            payloads.reserveCapacity(Int(last.rawValue - first.rawValue + 1))
            for entry in first.rawValue...last.rawValue {
                if let payload = batch[entry] {
                    payloads.append(payload)
                } else {
                    payloads.append(try await read(EntryID(entry)))
                }
            }
            return payloads
        }
        var payloads: [[UInt8]] = []
        payloads.reserveCapacity(Int(last.rawValue - first.rawValue + 1))
        var next = first.rawValue
        while next <= last.rawValue {
            let window = next...min(last.rawValue, next + Int64(parallel) - 1)
            next = window.upperBound + 1
            let read = try await withThrowingTaskGroup(of: (Int64, [UInt8]).self) { group in
                for entry in window { group.addTask { (entry, try await self.read(EntryID(entry))) } }
                return try await group.reduce(into: [Int64: [UInt8]]()) { $0[$1.0] = $1.1 }
            }
            for entry in window { payloads.append(read[entry]!) }
        }
        return payloads
    }

    /// Entries `first...last` in one READ_RANGE to one bookie, when each bookie of their fragment holds every
    /// entry of it (write quorum = ensemble): a reader catching up pays one request per batch, where reading
    /// entry by entry cost a request, tasks and a speculation timer per entry, so much that a tailing reader
    /// a few entries behind fell further behind. Only intact entries of the range are kept; those the answer
    /// lacks (a bookie that missed them, damage, the size bound) are read one by one as usual. Nil when the
    /// range is not in one such fragment, or the bookie failed or did not answer within the speculative delay:
    /// then every entry is read the usual way, another replica included.
    private func readBatch(from first: EntryID, through last: EntryID) async -> [Int64: [UInt8]]? {
        let metadata = state.withLock { $0.metadata }
        let fragment = metadata.fragment(for: first)
        guard quorums.writeQuorum == quorums.ensembleSize, metadata.fragment(for: last) == fragment else { return nil }
        // The first replica of the first entry's write set: batches of consecutive ranges spread over the bookies.
        let bookie = fragment.bookies[quorums.writeSet(of: first)[0]]
        let started = LedgerMeters.now
        let answer: BookieResponse
        do {
            let request = BookieRequest.readRange(ledger: id, first: first, last: last, maxBytes: Self.batchBytesMax)
            answer = try await pool.send(request, to: bookie, lane: id.rawValue,
                                         timeout: options.speculativeReadDelay ?? options.readTimeout)
        } catch {
            return nil
        }
        guard case .entryBatch(let entries, _) = answer else { return nil }
        var payloads: [Int64: [UInt8]] = [:]
        for bytes in entries {
            guard let header = try? EntryCodec.validate(bytes), header.ledger == id,
                  (first.rawValue...last.rawValue).contains(header.entry.rawValue) else { continue }
            payloads[header.entry.rawValue] = Array(bytes[EntryHeader.byteCount...])
        }
        let took = LedgerMeters.since(started)
        for _ in payloads.indices { pool.meters.read.recordNanoseconds(took) }
        return payloads
    }

    /// The most bytes one batch read asks for.
    static let batchBytesMax: UInt32 = 4 << 20

    private enum ReadEvent: Sendable {
        case answer(Result<[UInt8], ReplicaFailure>)
        /// The speculative delay of the `n`th replica asked ran out.
        case speculate(Int)
    }

    private struct ReplicaFailure: Error {
        var reason: String
    }

    /// Asks `replicas` in order: the next one after a failure, or after the speculative delay without an answer.
    /// Returns the first intact payload; throws `unreadable` with every replica's reason when none had one.
    private func readAny(_ entry: EntryID, from replicas: [BookieID]) async throws -> [UInt8] {
        let (events, sink) = AsyncStream.makeStream(of: ReadEvent.self)
        var timers: [Task<Void, Never>] = []
        defer {
            sink.finish()
            // A read that is done needs no more speculation: do not keep a sleeping task per read.
            for timer in timers { timer.cancel() }
        }
        var asked = 0
        var reasons: [String] = []
        func askNext() {
            let bookie = replicas[asked]
            asked += 1
            Task { sink.yield(.answer(await fetch(entry, from: bookie))) }
            if let delay = options.speculativeReadDelay, asked < replicas.count {
                let n = asked
                timers.append(Task {
                    guard (try? await Task.sleep(for: delay)) != nil else { return }
                    sink.yield(.speculate(n))
                })
            }
        }
        askNext()
        for await event in events {
            switch event {
            case .answer(.success(let payload)):
                return payload
            case .answer(.failure(let failure)):
                reasons.append(failure.reason)
                if reasons.count == replicas.count { throw LedgerError.unreadable(id, entry, reasons) }
                // Ask the next replica unless a speculative read already has every one asked.
                if asked < replicas.count { askNext() }
            case .speculate(let n):
                // Only the delay of the latest replica asked counts; an earlier timer is stale.
                if n == asked, asked < replicas.count { askNext() }
            }
        }
        throw LedgerError.unreadable(id, entry, reasons)
    }

    private func fetch(_ entry: EntryID, from bookie: BookieID) async -> Result<[UInt8], ReplicaFailure> {
        do {
            let answer = try await pool.send(.read(ledger: id, entry: entry, fenceWith: nil), to: bookie,
                                             lane: id.rawValue, timeout: options.readTimeout)
            switch answer {
            case .entry(let bytes):
                return checked(bytes, entry: entry, from: bookie)
            case .failed(.corruptEntry, let message):
                return .failure(damaged(entry, on: bookie, "\(BookieStatus.corruptEntry): \(message)"))
            case .failed(let status, let message):
                return .failure(ReplicaFailure(reason: "\(bookie): \(status): \(message)"))
            case let other:
                return .failure(ReplicaFailure(reason: "\(bookie): unexpected answer \(other)"))
            }
        } catch {
            return .failure(ReplicaFailure(reason: "\(bookie): \(error)"))
        }
    }

    /// The payload if the stored entry is intact and is the one asked for; else the reason it was skipped.
    private func checked(_ bytes: [UInt8], entry: EntryID, from bookie: BookieID) -> Result<[UInt8], ReplicaFailure> {
        do {
            let header = try EntryCodec.validate(bytes)
            guard header.ledger == id, header.entry == entry else {
                return .failure(damaged(entry, on: bookie, "returned \(header.ledger)/\(header.entry) instead"))
            }
            return .success(Array(bytes[EntryHeader.byteCount...]))
        } catch {
            return .failure(damaged(entry, on: bookie, "\(error)"))
        }
    }

    /// Counts and logs a damaged replica: the read goes on with another, but an operator should know.
    private func damaged(_ entry: EntryID, on bookie: BookieID, _ why: String) -> ReplicaFailure {
        state.withLock { $0.damagedReplicas += 1 }
        pool.logger.warning("damaged replica skipped", metadata: [
            "ledger": "\(id)", "entry": "\(entry)", "bookie": "\(bookie)", "reason": "\(why)"])
        return ReplicaFailure(reason: "\(bookie): \(why) (damaged replica skipped)")
    }
}

