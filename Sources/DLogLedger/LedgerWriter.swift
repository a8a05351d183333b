import CoreMetrics
import DLogMetadata
import DLogWire
import Foundation
import NIOCore
import Synchronization

/// The 20-byte key a ledger's writer and recoverers prove themselves with, and the check value stored in its
/// metadata so an opener with the wrong password is told so (the key cannot be read back from it).
public struct LedgerPassword: Sendable {
    public let masterKey: MasterKey
    public let check: [UInt8]

    public init(_ password: String) {
        masterKey = MasterKey(password: "ledger:" + password)
        check = MasterKey(password: "check:" + password).bytes
    }
}

/// The single writer of one ledger: adds go to the Qw bookies of each entry's write set, and are confirmed in
/// entry order once Qa of them acknowledged (`PendingAdds`). Each add carries the LAC at the time it is sent.
/// Many adds may be in flight; `append` returns when its entry is confirmed.
public final class LedgerWriter: Sendable {
    public typealias AddCompletion = @Sendable (Result<EntryID, any Error>) -> Void

    public struct Options: Sendable {
        /// Adds sent but not yet confirmed, at most; an add beyond fails at once with `tooManyOutstandingAdds`
        /// (the caller slows down) instead of queueing without bound behind a slow ensemble.
        public var maxOutstandingAdds = 8192
        /// When a bookie far slower than the rest of the ensemble is replaced (`SlowBookiePolicy`); nil: never.
        public var slowBookie: SlowBookiePolicy.Settings? = SlowBookiePolicy.Settings()
        public init() {}
    }

    public let id: LedgerID
    public let quorums: Quorums
    public let options: Options
    let pool: BookiePool
    let password: LedgerPassword
    let placement: EnsemblePlacement

    private struct Unconfirmed {
        var bytes: [UInt8]
        var length: UInt64
        var waiter: AddCompletion
        /// When it was appended (`LedgerMeters.now`): its confirmation records the add's latency.
        var appended: UInt64
    }

    private struct State {
        var metadata: LedgerMetadata
        var version: Version
        var ensemble: [BookieClient]
        var pending: PendingAdds
        var unconfirmed: [EntryID: Unconfirmed] = [:]
        /// Ledger length after the last entry sent, and after the last confirmed.
        var lengthSent: UInt64 = 0
        var lengthConfirmed: UInt64 = 0
        var failure: LedgerError?
        /// `close` waiters: resumed once nothing is pending and no ensemble change is running.
        var drained: [CheckedContinuation<Void, Never>] = []
        /// Set by `close`: no new adds, while the ones in flight (and any ensemble change for them) finish.
        var closing = false
        /// Positions whose bookie failed and awaits replacement; adds appended meanwhile wait in `held`.
        var failedPositions: Set<Int> = []
        var changing = false
        var held: [EntryID] = []
        /// Bookies that failed this writer: never chosen again as replacements.
        var failedBookies: Set<BookieID> = []
        /// Positions whose bookie failed with no replacement available, written around while every write set
        /// still has an ack quorum of live bookies (their entries are then under-replicated).
        var degraded: Set<Int> = []
        /// The highest LAC the bookies were told, on an add's header or written explicitly, and whether an
        /// explicit write of a newer one is scheduled.
        var lacTold = EntryID.none
        var lacScheduled = false
        /// Set when the ensemble changed: the next explicit LAC goes to every live bookie, since a replacement
        /// knows no LAC at all (`LACTargets` assumes every bookie knows `lacTold`).
        var lacToEveryone = false
        /// The highest LAC every live bookie was told (E = Qw adds carry it to all; explicit writes to all), the
        /// positions the last explicit write went to, and whether `BookiePool.lacDebts` holds this writer until
        /// it tells the rest (`tellEveryone`).
        var lacToldAll = EntryID.none
        var lacRound: (told: EntryID, positions: Set<Int>) = (.none, [])
        var lacOwed = false
        /// Answer times per position, and the verdict on a slow bookie (nil when the policy is off).
        var slow: SlowBookiePolicy?
        /// Failed positions that are only slow: without a replacement they are kept, never written around.
        var slowPositions: Set<Int> = []
    }

    private let state: Mutex<State>

    private init(id: LedgerID, quorums: Quorums, metadata: LedgerMetadata, version: Version, ensemble: [BookieClient],
                 pool: BookiePool, password: LedgerPassword, placement: EnsemblePlacement, options: Options) {
        precondition(options.maxOutstandingAdds >= 1, "maxOutstandingAdds must be at least 1")
        self.id = id
        self.quorums = quorums
        self.options = options
        self.pool = pool
        self.password = password
        self.placement = placement
        state = Mutex(State(metadata: metadata, version: version, ensemble: ensemble, pending: PendingAdds(quorums: quorums),
                            slow: options.slowBookie.map { SlowBookiePolicy(positions: ensemble.count, settings: $0) }))
    }

    /// Creates a ledger: a new id, an ensemble placed over the writable bookies, metadata created OPEN.
    public static func create<R: RandomNumberGenerator>(
        quorums: Quorums, password: String, pool: BookiePool, allocator: LedgerIDAllocator,
        placement: EnsemblePlacement = EnsemblePlacement(policy: .random), custom: [String: [UInt8]] = [:],
        options: Options = Options(), using rng: inout R
    ) async throws -> LedgerWriter {
        let registered = try await pool.registered()
        let id = try await allocator.next()
        // A registered bookie may still be unreachable from here: place again without it (each round excludes
        // one more, so this ends with an ensemble or a placement error naming the shortage).
        var unreachable: Set<BookieID> = []
        var choice: EnsemblePlacement.Choice
        var clients: [BookieClient] = []
        placing: while true {
            do {
                choice = try placement.ensemble(for: quorums, from: registered, excluding: unreachable, using: &rng)
            } catch {
                throw LedgerError.placement(error.message + (unreachable.isEmpty ? "" : "; unreachable from this client: \(unreachable.sorted())"))
            }
            clients = []
            for bookie in choice.bookies {
                do {
                    clients.append(try await pool.client(for: bookie, lane: id.rawValue))
                } catch {
                    pool.logger.warning("bookie unreachable, placing the ledger without it",
                                        metadata: ["ledger": "\(id)", "bookie": "\(bookie)", "reason": "\(error)"])
                    unreachable.insert(bookie)
                    continue placing
                }
            }
            break
        }
        if let warning = choice.warning {
            pool.logger.warning("ledger placed with less rack spread than asked", metadata: ["ledger": "\(id)", "reason": "\(warning)"])
        }
        let secret = LedgerPassword(password)
        let metadata = LedgerMetadata(
            ensembleSize: quorums.ensembleSize, writeQuorum: quorums.writeQuorum, ackQuorum: quorums.ackQuorum,
            passwordHash: secret.check, fragments: [.init(firstEntry: EntryID(0), bookies: choice.bookies)],
            creationTime: Int64(Date().timeIntervalSince1970 * 1000), custom: custom)
        let version = try await pool.cluster.createLedger(id, metadata)
        return LedgerWriter(id: id, quorums: quorums, metadata: metadata, version: version, ensemble: clients,
                            pool: pool, password: secret, placement: placement, options: options)
    }

    public var lastAddConfirmed: EntryID { state.withLock { $0.pending.lastAddConfirmed } }
    public var ensemble: [BookieID] { state.withLock { $0.metadata.fragments.last!.bookies } }

    /// Adds `payload` as the next entry; returns its id once it is confirmed.
    public func append(_ payload: [UInt8]) async throws -> EntryID {
        try await withCheckedThrowingContinuation { waiter in
            append(payload) { waiter.resume(with: $0) }
        }
    }

    /// Adds `payload` as the next entry and calls `completion` once it is confirmed or failed. The entry id is
    /// taken before this returns, so calls made one after another (under the caller's own lock, say) get
    /// consecutive ids in that order. `completion` is never called on the caller's stack (it may hold a lock the
    /// completion takes).
    public func append(_ payload: [UInt8], then completion: @escaping AddCompletion) {
        let outcome = state.withLock { s -> Result<[(BookieClient, [UInt8], EntryID, Int)], LedgerError> in
            if let failure = s.failure { return .failure(failure) }
            if s.closing { return .failure(.writerClosed(id, "the ledger is being closed")) }
            guard s.pending.count < options.maxOutstandingAdds else {
                return .failure(.tooManyOutstandingAdds(id, limit: options.maxOutstandingAdds))
            }
            let (entry, positions) = s.pending.append()
            s.lengthSent += UInt64(payload.count)
            let header = EntryHeader(ledger: id, entry: entry, lastAddConfirmed: s.pending.lastAddConfirmed,
                                     ledgerLength: s.lengthSent)
            s.lacTold = max(s.lacTold, header.lastAddConfirmed)
            if quorums.writeQuorum == quorums.ensembleSize, s.degraded.isEmpty, !s.changing {
                s.lacToldAll = max(s.lacToldAll, header.lastAddConfirmed)
            }
            let bytes = EntryCodec.encode(header, payload: payload)
            s.unconfirmed[entry] = Unconfirmed(bytes: bytes, length: s.lengthSent, waiter: completion, appended: LedgerMeters.now)
            // While a failed bookie is being replaced, the entry waits: it goes to the new ensemble.
            if s.changing {
                s.held.append(entry)
                return .success([])
            }
            return .success(positions.filter { !s.degraded.contains($0) }.map { (s.ensemble[$0], bytes, entry, $0) })
        }
        let sends: [(BookieClient, [UInt8], EntryID, Int)]
        switch outcome {
        case .success(let list):
            sends = list
        case .failure(let refusal):
            // Not on the caller's stack: it may hold a lock that the completion takes.
            Task { completion(.failure(refusal)) }
            return
        }
        for (client, bytes, entry, position) in sends { send(bytes, entry: entry, position: position, to: client) }
    }

    private func send(_ bytes: [UInt8], entry: EntryID, position: Int, to client: BookieClient) {
        let sent = ContinuousClock.now
        client.send(.add(masterKey: password.masterKey, entry: bytes, recovery: false)) { result in
            self.answered(entry, position: position, by: client, sent: sent, result: result)
        }
    }

    private func answered(_ entry: EntryID, position: Int, by client: BookieClient, sent: ContinuousClock.Instant,
                          result: Result<BookieResponse, any Error>) {
        switch result {
        case .success(.added):
            // The identity check and the acknowledgement under one lock: an ensemble change in between would
            // otherwise let a replaced bookie's answer count for a position it no longer holds.
            let now = ContinuousClock.now
            let (confirmed, drained, slow) = state.withLock { s -> ([(EntryID, AddCompletion)], [CheckedContinuation<Void, Never>], (Int, BookieClient, String)?) in
                guard s.ensemble[position] === client else { return ([], [], nil) }
                let (confirmed, drained) = Self.take(s.pending.acknowledge(entry, from: position), from: &s, meters: pool.meters)
                s.slow?.record(now - sent, position: position)
                guard !s.changing, s.failure == nil, let verdict = s.slow?.verdict(now: now) else {
                    return (confirmed, drained, nil)
                }
                return (confirmed, drained, (verdict.position, s.ensemble[verdict.position],
                                             "slow: its median add took \(Self.milliseconds(verdict.median)), the rest of the ensemble's \(Self.milliseconds(verdict.others))"))
            }
            for (id, waiter) in confirmed { waiter(.success(id)) }
            for waiter in drained { waiter.resume() }
            if !confirmed.isEmpty { scheduleLAC() }
            if let (position, client, why) = slow { bookieFailed(at: position, client: client, why, onlySlow: true) }
        case .success(.failed(.fenced, _)):
            fail(.fenced(id))
        case .success(.failed(let status, let message)) where Self.replaceable.contains(status):
            bookieFailed(at: position, client: client, "\(status): \(message)")
        case .success(.failed(let status, let message)):
            // Not the bookie's fault (a bad or oversize entry, a wrong key): no other bookie would do better.
            if let bookie = bookie(at: position, ifStill: client) {
                fail(.bookieFailed(id, bookie, "\(status): \(message)"))
            }
        case .success(let other):
            if let bookie = bookie(at: position, ifStill: client) {
                fail(.bookieFailed(id, bookie, "unexpected answer \(other) to an add"))
            }
        case .failure(let error):
            bookieFailed(at: position, client: client, "\(error)")
        }
    }

    /// Tells the bookies a LAC they have not been told, once the work at hand on the event loop is done: an add
    /// sent meanwhile (a writer with more records) carries it in its header, and then nothing more is sent.
    /// Otherwise a tailing reader would learn of the last confirmed entries only with the next add, however long
    /// the writer stays idle. At most one explicit write per ledger per event-loop turn.
    private func scheduleLAC() {
        let loop = state.withLock { s -> EventLoop? in
            guard !s.lacScheduled, s.failure == nil, s.pending.lastAddConfirmed > s.lacTold else { return nil }
            // A closed client's loop may be shut down; nothing could be sent on it anyway.
            guard let client = s.ensemble.first, !client.isClosed else { return nil }
            s.lacScheduled = true
            return client.channel.eventLoop
        }
        loop?.execute { self.writeLAC() }
    }

    private func writeLAC() {
        // Changing ensembles: the end of the change schedules again.
        let target = state.withLock { s -> (EntryID, [BookieClient], owed: Bool)? in
            s.lacScheduled = false
            guard !s.changing, s.failure == nil, s.pending.lastAddConfirmed > s.lacTold else { return nil }
            let live = s.ensemble.indices.filter { !s.degraded.contains($0) }
            let told = s.lacToEveryone ? Set(live)
                : LACTargets.positions(from: s.lacTold, to: s.pending.lastAddConfirmed, quorums: quorums, live: live)
            s.lacTold = s.pending.lastAddConfirmed
            s.lacToEveryone = false
            s.lacRound = (s.lacTold, told)
            let owed = told.count < live.count && !s.lacOwed
            if told.count == live.count { s.lacToldAll = s.lacTold } else { s.lacOwed = true }
            return (s.lacTold, live.filter { told.contains($0) }.map { s.ensemble[$0] }, owed)
        }
        guard let (lac, clients, owed) = target else { return }
        // Best effort: a bookie that misses it learns the LAC from the next add, and one a reader polls after
        // its first choice failed learns it from `tellEveryone`.
        let request = BookieRequest.writeLAC(ledger: id, masterKey: password.masterKey, lac: lac)
        for client in clients { client.send(request) { _ in } }
        if owed { pool.lacDebts.owe(self) }
    }

    /// Tells the bookies not told the latest LAC explicitly (`writeLAC` told only those a reader polls first),
    /// unless an add has carried it to all of them since: a reader that polls another bookie (one behind, or
    /// one whose first choice failed) then finds it too, however long the writer stays idle.
    func tellEveryone() {
        let target = state.withLock { s -> (EntryID, [BookieClient])? in
            s.lacOwed = false
            guard !s.changing, s.failure == nil, s.lacTold > s.lacToldAll else { return nil }
            s.lacToldAll = s.lacTold
            // Those told this very LAC already are skipped; after an add raised it, nobody is.
            let round = s.lacRound.told == s.lacTold ? s.lacRound.positions : []
            let rest = s.ensemble.indices.filter { !s.degraded.contains($0) && !round.contains($0) }
            return (s.lacTold, rest.map { s.ensemble[$0] })
        }
        guard let (lac, clients) = target else { return }
        let request = BookieRequest.writeLAC(ledger: id, masterKey: password.masterKey, lac: lac)
        for client in clients { client.send(request) { _ in } }
    }

    /// The waiters of newly confirmed entries, and of `close` once nothing is pending; taken out of the state
    /// so they are resumed outside the lock.
    private static func take(_ ids: [EntryID], from s: inout State, meters: LedgerMeters)
        -> ([(EntryID, AddCompletion)], [CheckedContinuation<Void, Never>]) {
        let done = ids.compactMap { id -> (EntryID, AddCompletion)? in
            guard let u = s.unconfirmed.removeValue(forKey: id) else { return nil }
            s.lengthConfirmed = u.length
            meters.add.recordNanoseconds(LedgerMeters.since(u.appended))
            return (id, u.waiter)
        }
        return (done, takeDrained(from: &s))
    }

    /// The `close` waiters, once nothing is pending and no ensemble change runs (its compare-and-set would
    /// collide with the close's).
    private static func takeDrained(from s: inout State) -> [CheckedContinuation<Void, Never>] {
        guard (s.pending.isEmpty && !s.changing) || s.failure != nil else { return [] }
        defer { s.drained.removeAll() }
        return s.drained
    }

    static func milliseconds(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return ms < 10 ? "\((ms * 100).rounded() / 100) ms" : "\(Int(ms.rounded())) ms"
    }

    /// Answers after which another bookie may succeed where this one did not.
    static let replaceable: Set<BookieStatus> = [.ioError, .readOnly, .shuttingDown, .tooManyRequests]

    /// Starts replacing the bookie at `position` (once, however many of its adds fail), unless `client` no
    /// longer holds that position (a late answer from a bookie already replaced).
    /// `onlySlow`: the bookie answers, only far too slowly; without a replacement it is kept (see `keep`).
    private func bookieFailed(at position: Int, client: BookieClient, _ why: String, onlySlow: Bool = false) {
        let start = state.withLock { s -> Bool in
            guard s.ensemble[position] === client, s.failure == nil, !s.failedPositions.contains(position),
                  !s.degraded.contains(position) else { return false }
            s.failedPositions.insert(position)
            if onlySlow { s.slowPositions.insert(position) } else { s.slowPositions.remove(position) }
            s.failedBookies.insert(s.metadata.fragments.last!.bookies[position])
            // Nothing is confirmed until the change is recorded: the new fragment starts at the first
            // unconfirmed entry, and every entry from there must reach the replacement.
            s.pending.holding = true
            defer { s.changing = true }
            return !s.changing
        }
        if start { Task { await changeEnsemble(reason: why) } }
    }

    /// The bookie at `position`, if `client` still holds it.
    private func bookie(at position: Int, ifStill client: BookieClient) -> BookieID? {
        state.withLock { s in s.ensemble[position] === client ? s.metadata.fragments.last!.bookies[position] : nil }
    }

    /// Replaces the failed bookies: a new fragment from the first unconfirmed entry, written to metadata by
    /// compare-and-set, then the unconfirmed entries resent to the replacements and the held ones sent to all.
    /// Repeats while more bookies failed meanwhile. A lost compare-and-set means the ledger is being recovered.
    private func changeEnsemble(reason: String) async {
        let started = LedgerMeters.now
        defer { pool.meters.ensembleChange.recordNanoseconds(LedgerMeters.since(started)) }
        rounds: while true {
            let (failed, metadata, version, excluded, firstEntry) = state.withLock { s in
                (s.failedPositions, s.metadata, s.version, s.failedBookies,
                 s.pending.firstUnconfirmed ?? s.pending.nextEntry)
            }
            var bookies = metadata.fragments.last!.bookies
            var replacements: [Int: BookieClient] = [:]
            do {
                let registered = try await pool.registered()
                var rng = SystemRandomNumberGenerator()
                for position in failed.sorted() {
                    let choice: EnsemblePlacement.Choice
                    do {
                        choice = try placement.replacement(for: position, in: bookies, quorums: quorums, from: registered,
                                                           excluding: excluded, using: &rng)
                    } catch {
                        if state.withLock({ $0.slowPositions.contains(position) }) {
                            // Only slow: keeping it costs speed, writing around it would cost a copy. Every ledger on
                            // the bookie sees this at once: one line per bookie every 10 s, with the count folded in.
                            if let folded = pool.admitNote("slow-kept \(bookies[position].rawValue)") {
                                pool.logger.notice("slow bookie kept in the ledger's ensemble: no bookie to replace it", metadata: [
                                    "ledger": "\(id)", "bookie": "\(bookies[position].rawValue)", "reason": "\(reason)",
                                    "no_replacement": "\(error.message)", "other_ledgers_since_last": "\(folded)"])
                            }
                            if keep(position) { return }
                            continue rounds
                        }
                        // No bookie to take its place: write around it if every write set keeps an ack quorum.
                        switch degrade(failed) {
                        case .done:
                            let quorums = self.quorums
                            markWrittenAround(failed.sorted().map { bookies[$0] })
                            pool.logger.warning("writing around a failed bookie: entries get fewer than write_quorum copies until the ledger is re-replicated", metadata: [
                                "ledger": "\(id)", "bookie": "\(failed.sorted().map { bookies[$0].rawValue }.joined(separator: ","))",
                                "first_entry": "\(firstEntry.rawValue)", "write_quorum": "\(quorums.writeQuorum)",
                                "reason": "\(reason)", "no_replacement": "\(error.message)"])
                            return
                        case .moreFailed: continue rounds
                        case .impossible:
                            throw LedgerError.bookieFailed(id, bookies[position],
                                "\(reason); no replacement (\(error.message)) and too few live bookies left for an ack quorum of \(quorums.ackQuorum)")
                        }
                    }
                    if let warning = choice.warning {
                        pool.logger.warning("replacement placed with less rack spread than asked",
                                            metadata: ["ledger": "\(id)", "reason": "\(warning)"])
                    }
                    guard let client = try? await pool.client(for: choice.bookies[0], lane: id.rawValue) else {
                        // Unreachable from here: never choose it again; place this position once more.
                        state.withLock { _ = $0.failedBookies.insert(choice.bookies[0]) }
                        continue rounds
                    }
                    bookies[position] = choice.bookies[0]
                    replacements[position] = client
                }
                let changed: LedgerMetadata
                let newVersion: Version
                do {
                    guard let (c, v) = try await update(metadata, version: version, { changed in
                        if changed.fragments.last!.firstEntry == firstEntry {
                            changed.fragments[changed.fragments.count - 1].bookies = bookies
                        } else {
                            changed.fragments.append(.init(firstEntry: firstEntry, bookies: bookies))
                        }
                    }) else { throw LedgerError.fenced(id) }
                    (changed, newVersion) = (c, v)
                } catch let error as MetadataError {
                    throw LedgerError.bookieFailed(id, metadata.fragments.last!.bookies[failed.sorted()[0]],
                                                   "\(reason); the ensemble change could not be recorded: \(error)")
                }
                for (position, _) in replacements.sorted(by: { $0.key < $1.key }) {
                    pool.logger.notice("bookie replaced in the ledger's ensemble", metadata: [
                        "ledger": "\(id)", "bookie": "\(metadata.fragments.last!.bookies[position].rawValue)",
                        "replacement": "\(bookies[position].rawValue)", "position": "\(position)",
                        "first_entry": "\(firstEntry.rawValue)", "reason": "\(reason)"])
                }
                // The old fragment keeps the entries confirmed before the failure; the replaced bookie may lack
                // those the others confirmed without it. Mark it, so a worker copies what it lacks (or, once it
                // is lost or retired, moves its copies).
                let old = metadata.fragments.last!
                if old.firstEntry < firstEntry {
                    markWrittenAround(replacements.keys.sorted().map { old.bookies[$0] }, fragment: old.firstEntry)
                }
                if adopt(changed, version: newVersion, replacements: replacements, replaced: failed) { return }
            } catch let error as LedgerError {
                return fail(error)
            } catch {
                return fail(.bookieFailed(id, bookies[failed.sorted()[0]], "\(reason); \(error)"))
            }
        }
    }

    /// What ending an ensemble change hands out, outside the lock: the sends it owes, the confirmations it
    /// released, and `close` waiters.
    private struct ChangeEnd {
        var sends: [(BookieClient, [UInt8], EntryID, Int)] = []
        var confirmed: [(EntryID, AddCompletion)] = []
        var drained: [CheckedContinuation<Void, Never>] = []
    }

    /// Ends the change once no position awaits replacement: the entries held meanwhile go to their write sets
    /// (less positions written around), and confirmations flow again.
    private func endChange(_ s: inout State, _ end: inout ChangeEnd) {
        precondition(s.failedPositions.isEmpty && s.changing)
        for entry in s.held {
            guard let bytes = s.unconfirmed[entry]?.bytes else { continue }
            for position in quorums.writeSet(of: entry) where !s.degraded.contains(position) {
                end.sends.append((s.ensemble[position], bytes, entry, position))
            }
        }
        s.held.removeAll()
        s.changing = false
        s.lacToEveryone = true
        s.pending.holding = false
        (end.confirmed, end.drained) = Self.take(s.pending.confirmReady(), from: &s, meters: pool.meters)
    }

    /// Sends, confirms and wakes what a change (or a round of it) handed out; `over`: the change ended.
    private func deliver(_ end: ChangeEnd, over: Bool) {
        for (client, bytes, entry, position) in end.sends { send(bytes, entry: entry, position: position, to: client) }
        for (id, waiter) in end.confirmed { waiter(.success(id)) }
        for waiter in end.drained { waiter.resume() }
        if over { scheduleLAC() }
    }

    /// Goes on without the bookies at `failed` when every write set still has Qa other live bookies: the
    /// ensemble stays as recorded, adds skip those positions (their entries have fewer than Qw copies), and the
    /// held entries go out. `impossible` when some write set would be left without an ack quorum.
    enum Degrade { case done, moreFailed, impossible }

    private func degrade(_ failed: Set<Int>) -> Degrade {
        var end = ChangeEnd()
        let outcome = state.withLock { s -> Degrade in
            let down = s.degraded.union(failed)
            guard quorums.allWriteSets.allSatisfy({ set in set.filter { !down.contains($0) }.count >= quorums.ackQuorum }) else {
                return .impossible
            }
            s.degraded = down
            s.failedPositions.subtract(failed)
            guard s.failedPositions.isEmpty else { return .moreFailed }
            endChange(&s, &end)
            return .done
        }
        deliver(end, over: outcome == .done)
        return outcome
    }

    /// Takes back a slow position that has no replacement: it stays in the ensemble, holding its copies.
    /// True when no other position awaits replacement and the change is over (held entries sent, confirmations
    /// released); false when another round is needed.
    private func keep(_ position: Int) -> Bool {
        var end = ChangeEnd()
        let over = state.withLock { s -> Bool in
            s.failedPositions.remove(position)
            s.slowPositions.remove(position)
            s.failedBookies.remove(s.metadata.fragments.last!.bookies[position])
            guard s.failure == nil else { return true }
            guard s.failedPositions.isEmpty else { return false }
            endChange(&s, &end)
            return true
        }
        deliver(end, over: over)
        return over
    }

    /// Switches to the changed ensemble and sends what the replacements and the held entries need. Returns
    /// false when more positions failed during the change (another round is needed).
    private func adopt(_ metadata: LedgerMetadata, version: Version, replacements: [Int: BookieClient],
                       replaced: Set<Int>) -> Bool {
        var end = ChangeEnd()
        let over = state.withLock { s -> Bool in
            guard s.failure == nil else { return true }
            s.metadata = metadata
            s.version = version
            let held = Set(s.held)
            for (position, client) in replacements {
                s.ensemble[position] = client
                s.slowPositions.remove(position)
                s.slow?.reset(position: position)
                for entry in s.pending.replace(position: position) where !held.contains(entry) {
                    if let bytes = s.unconfirmed[entry]?.bytes { end.sends.append((client, bytes, entry, position)) }
                }
            }
            s.failedPositions.subtract(replaced)
            guard s.failedPositions.isEmpty else { return false }
            endChange(&s, &end)
            return true
        }
        deliver(end, over: over)
        return over
    }

    /// Writes `change` over `metadata` by compare-and-set. A replication worker may meanwhile have replaced a
    /// bookie in an earlier fragment (it never touches an open ledger's last fragment): that change is taken on
    /// and ours applied over it. nil when anything else changed (the state, the last fragment): the ledger is
    /// being recovered, and this writer is fenced.
    private func update(_ metadata: LedgerMetadata, version: Version,
                        together: (@Sendable (LedgerMetadata) throws -> Transaction)? = nil,
                        _ change: (inout LedgerMetadata) -> Void) async throws -> (LedgerMetadata, Version)? {
        var base = metadata, version = version
        for _ in 0..<16 {
            var changed = base
            change(&changed)
            do {
                guard let together else { return (changed, try await pool.cluster.updateLedger(id, changed, ifVersion: version)) }
                var transaction = try together(changed)
                transaction.checks.append(.init(key: ClusterKeys.ledger(id), version: version))
                transaction.operations.append(try pool.cluster.ledgerUpdate(id, changed))
                return (changed, Version(try await pool.cluster.store.commit(transaction)))
            } catch let conflict as MetadataError {
                guard case .versionConflict = conflict else { throw conflict }
                guard let (now, nowVersion) = try await pool.cluster.ledger(id), now.state == .open,
                      now.fragments.count == base.fragments.count, now.fragments.last == base.fragments.last else { return nil }
                // The ledger's record did not change: a check of `together` failed, which is the caller's to handle.
                if together != nil && nowVersion == version { throw conflict }
                (base, version) = (now, nowVersion)
            }
        }
        return nil
    }

    /// Records that `bookies` are written around, so the copies they miss are made once they return or are
    /// replaced (docs/recovery.md). Best effort: the periodic audit finds the same gaps if this is lost.
    private func markWrittenAround(_ bookies: [BookieID], fragment: EntryID? = nil) {
        let (cluster, logger, id) = (pool.cluster, pool.logger, id)
        let fragments = fragment.map { [$0.rawValue] } ?? []
        Task {
            do {
                try await cluster.mark(id, bookies.map { ReplicaMark(bookie: $0, reason: .writtenAround, fragments: fragments) })
            } catch {
                logger.warning("could not mark written-around entries; the next audit finds them", metadata: [
                    "ledger": "\(id)", "error": "\(error)"])
            }
        }
    }

    /// Ends the writer: every pending and later add fails with `error`.
    private func fail(_ error: LedgerError) {
        let (waiters, drained) = state.withLock { s -> ([AddCompletion], [CheckedContinuation<Void, Never>]) in
            if s.failure == nil { s.failure = error }
            let ids = s.pending.removeAll()
            let waiters = ids.compactMap { s.unconfirmed.removeValue(forKey: $0)?.waiter }
            return (waiters, Self.takeDrained(from: &s))
        }
        for waiter in waiters { waiter(.failure(error)) }
        for waiter in drained { waiter.resume() }
    }

    /// Takes no more adds, waits for every add in flight (and an ensemble change for them), then closes the
    /// ledger in metadata: compare-and-set to CLOSED with its last entry and length. A writer that was fenced
    /// meanwhile gets `fenced`: the recoverer closes the ledger.
    @discardableResult
    public func close() async throws -> LedgerMetadata {
        try await close(together: nil).metadata
    }

    /// Like `close()`, and commits `together(closed)` in the same metadata transaction as the ledger's own
    /// change: a record that describes the closed ledger (a log segment's completed record, with its checks)
    /// changes with it or not at all, in one commit instead of two. Returns the closed ledger and the version
    /// the commit gave `together`'s records. When a check of `together` fails, this throws
    /// `MetadataError.versionConflict` and the ledger stays open in metadata (its writer still takes no adds).
    /// `together` may throw to refuse the closed ledger (nothing is committed then).
    public func close(together: (@Sendable (LedgerMetadata) throws -> Transaction)?) async throws
        -> (metadata: LedgerMetadata, committed: Version) {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                s.closing = true
                if (s.pending.isEmpty && !s.changing) || s.failure != nil { return true }
                s.drained.append(waiter)
                return false
            }
            if now { waiter.resume() }
        }
        let (closing, version, failure) = state.withLock { s -> (LedgerMetadata, Version, LedgerError?) in
            let earlier = s.failure
            if s.failure == nil { s.failure = .writerClosed(id, "the ledger was closed") }
            var closed = s.metadata
            closed.state = .closed
            closed.lastEntry = s.pending.lastAddConfirmed
            closed.length = s.lengthConfirmed
            return (closed, s.version, earlier)
        }
        if case .fenced? = failure { throw LedgerError.fenced(id) }
        // Closed already (a second close): nothing to write. A writer that failed otherwise is still closed at
        // its last confirmed entry.
        if let done = state.withLock({ s in s.metadata.state == .closed ? s.metadata : nil }) {
            guard let together else { return (done, version) }
            return (done, Version(try await pool.cluster.store.commit(try together(done))))
        }
        let based = state.withLock { $0.metadata }
        guard let (closed, newVersion) = try await update(based, version: version, together: together, { closed in
            closed.state = .closed
            closed.lastEntry = closing.lastEntry
            closed.length = closing.length
        }) else {
            // Only a recoverer takes the last fragment or the state of a ledger with a live writer.
            throw LedgerError.fenced(id)
        }
        state.withLock { s in
            s.metadata = closed
            s.version = newVersion
        }
        return (closed, newVersion)
    }
}
