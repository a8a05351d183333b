import DLogMetadata
import DLogWire
import Foundation
import Logging
import Synchronization

/// Heals marked ledgers (docs/recovery.md). It takes one marked ledger at a time under a lock bound to its
/// lease, and for each mark:
///
/// - **the bookie is leaving** (lost, retiring): for every fragment naming it, chooses a replacement with the
///   placement policy (never a bookie of that fragment's ensemble), copies each entry that position holds from
///   a healthy replica (CRC checked; the next replica when one is damaged or missing), then replaces the bookie
///   in the metadata by compare-and-set;
/// - **the bookie stays** (written around, damaged, missing): copies what it lacks back to it.
///
/// Only then is the mark removed. A crash at any point leaves the mark (the lock expires with the lease and
/// another worker redoes the work: copies are idempotent), and metadata never names a bookie before its copies
/// are in place. The last fragment of an OPEN ledger belongs to its writer, whose own ensemble change covers
/// it; once its marks are older than `openLedgerGrace` the writer is taken as gone and the ledger is recovered
/// (fenced and closed) first.
public final class ReplicationWorker: Sendable {
    public struct Settings: Sendable {
        /// Bytes copied per second at most (0: unpaced).
        public var rateBytesPerSecond = 16 << 20
        /// Entries copied at once, per worker: `batchesInFlight` batches of up to this many shared out (each read
        /// and written in pieces of up to `batchBytes`).
        public var entriesInFlight = 256
        /// Batches copied at once, per worker (fewer when `entriesInFlight` is smaller). Two left the cores idle
        /// between a batch's read and its target's sync; six kept them busy (`scripts/bench-recovery.sh`, unpaced on
        /// 2 cores: 0.19 against 0.26 of the disk's bandwidth; twelve did no better), and hold at most 6 MiB.
        public var batchesInFlight = 6
        /// Bytes one batch reads and writes at most (one larger entry goes alone). An ADD_BATCH frame must fit the
        /// target's `max_frame_bytes`: the daemon sets half of its own, up to 1 MiB.
        public var batchBytes = 1 << 20
        /// Bytes one READ_RANGE and one ADD_BATCH carry at most: `batchBytes`, or less when paced, so that a paced
        /// copy goes out in pieces of about a 64th of a second of its rate (at least 64 KiB). A foreground add
        /// then waits in a journal behind one such piece, not behind a megabyte.
        public var pieceBytes: Int {
            guard rateBytesPerSecond > 0 else { return batchBytes }
            return min(batchBytes, max(64 << 10, rateBytesPerSecond / 64))
        }
        /// How long an OPEN ledger's last fragment waits for its writer before the ledger is recovered.
        public var openLedgerGrace: Duration = .seconds(30)
        /// How often to look for marks when there is nothing to do. A worker watches the marks and starts on a
        /// new one at once; this is for a watch that broke.
        public var idlePoll: Duration = .seconds(1)
        public var requestTimeout: Duration = .seconds(10)
        public init() {}
    }

    /// The bookie a worker runs beside, called in process: a copy it reads from or writes to skips the network.
    public struct LocalBookie: Sendable {
        public let id: BookieID
        /// Answers READ_RANGE, ADD and ADD_BATCH; nil for any other request, which goes over the network.
        public let serve: @Sendable (BookieRequest) async -> BookieResponse?

        public init(id: BookieID, serve: @escaping @Sendable (BookieRequest) async -> BookieResponse?) {
            self.id = id
            self.serve = serve
        }
    }

    public enum Outcome: Equatable, Sendable {
        /// Every mark it could handle is gone; `bytes` copied.
        case repaired(bytes: Int)
        /// Nothing to do: the marks were gone already (another worker, or the ledger was deleted).
        case clean
        /// Marks remain that cannot be handled now, and why.
        case waiting(String)
    }

    public let me: BookieID
    public let pool: BookiePool
    public let placement: EnsemblePlacement
    public let settings: Settings
    /// Preferred as a source and as a replacement, among those the rules find equally good.
    let local: LocalBookie?
    let logger: Logger
    let progress: Mutex<WorkerProgress>
    let pacer: Mutex<CopyPacer>
    /// When the totals were last published.
    private let published = Mutex<ContinuousClock.Instant?>(nil)

    /// Publishes the totals if a second has passed since the last time: after every ledger, so a round over many
    /// ledgers (or one long copy) keeps `recovery status` current.
    private func publishIfDue(lease: LeaseID) async throws {
        let now = ContinuousClock.now
        guard published.withLock({ last in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }) else { return }
        var current = totals
        current.updatedAt = Int64(Date().timeIntervalSince1970 * 1000)
        try await cluster.publish(current, lease: lease)
    }

    /// Ledgers that had to wait, and when to look at them again.
    private let backoff = Mutex<[LedgerID: ContinuousClock.Instant]>([:])
    /// Why each waiting ledger waits, for the published progress.
    private let waits = Mutex<[LedgerID: String]>([:])

    public init(me: BookieID, pool: BookiePool, placement: EnsemblePlacement, settings: Settings = Settings(),
                local: LocalBookie? = nil, logger: Logger) {
        precondition(settings.entriesInFlight >= 1 && settings.batchesInFlight >= 1 && settings.batchBytes >= 1)
        self.me = me
        self.pool = pool
        self.placement = placement
        self.settings = settings
        self.local = local
        self.logger = logger
        progress = Mutex(WorkerProgress(bookie: me))
        pacer = Mutex(CopyPacer(bytesPerSecond: settings.rateBytesPerSecond))
    }

    var cluster: Cluster { pool.cluster }

    /// What this worker has done so far.
    public var totals: WorkerProgress { progress.withLock { $0 } }

    /// Works until cancelled: each round takes the marked ledgers no one holds, one at a time. Between rounds it
    /// waits for the marks to change (a watch), so a bookie declared lost is healed from that moment, not from
    /// the next poll.
    public func run(lease: @escaping @Sendable () async throws -> LeaseID) async {
        let marksChanged = Doorbell()
        let watcher = marksChanged.ring(onChangesTo: [.prefix(RecoveryKeys.underReplicated)], in: cluster.store,
                                        retry: settings.idlePoll)
        defer { watcher.cancel() }
        while !Task.isCancelled {
            var worked = false
            do {
                let held = try await lease()
                worked = try await round(lease: held)
                try await publishIfDue(lease: held)
            } catch is CancellationError {
                return
            } catch {
                logger.warning("replication round failed; retrying", metadata: ["error": "\(error)"])
            }
            if !worked { await marksChanged.wait(upTo: settings.idlePoll) }
        }
    }

    /// One pass over the marked ledgers. True when it repaired something.
    public func round(lease: LeaseID) async throws -> Bool {
        var marked: [LedgerID] = []
        try await cluster.forEachMarked { id, _, _ in if marked.count < 10_000 { marked.append(id) } }
        let now = ContinuousClock.now
        let due = backoff.withLock { b in marked.filter { b[$0].map { $0 <= now } ?? true } }
        let stillMarked = Set(marked)
        waits.withLock { w in w = w.filter { stillMarked.contains($0.key) } }
        defer { publishWaits() }
        var repaired = false
        // Workers start at different places so they rarely meet on one lock.
        for id in due.shuffled() {
            try Task.checkCancellation()
            let lock = RecoveryKeys.lock(id)
            guard try await cluster.hold(lock, RecoveryHolder(bookie: me), lease: lease) else { continue }
            progress.withLock { $0.ledger = id.rawValue }
            let outcome: Outcome
            do {
                outcome = try await repair(id)
            } catch {
                progress.withLock { $0.ledger = nil }
                backoff.withLock { $0[id] = .now + .seconds(5) }
                try? await cluster.release(lock, lease: lease)
                logger.warning("could not re-replicate a ledger; will retry", metadata: [
                    "ledger_id": "\(id.rawValue)", "error": "\(error)"])
                continue
            }
            try await cluster.release(lock, lease: lease)
            progress.withLock { $0.ledger = nil }
            try? await publishIfDue(lease: lease)
            switch outcome {
            case .repaired, .clean:
                if case .repaired = outcome {
                    repaired = true
                    progress.withLock { $0.ledgersRepaired += 1 }
                }
                backoff.withLock { _ = $0.removeValue(forKey: id) }
                waits.withLock { _ = $0.removeValue(forKey: id) }
            case .waiting(let why):
                backoff.withLock { $0[id] = .now + .seconds(2) }
                waits.withLock { $0[id] = why }
            }
        }
        return repaired
    }

    /// The distinct reasons ledgers wait, a line each, into the published progress.
    private func publishWaits() {
        let lines = waits.withLock { Set($0.values.flatMap { $0.split(separator: "\n").map(String.init) }) }.sorted()
        progress.withLock { $0.waiting = lines.isEmpty ? nil : lines.prefix(20).joined(separator: "\n") }
    }

    /// Heals ledger `id` as far as it can now. Run under the ledger's lock. The time a repair took goes to
    /// `dlog_recovery_ledger_duration_seconds`.
    public func repair(_ id: LedgerID) async throws -> Outcome {
        let started = LedgerMeters.now
        let outcome = try await heal(id)
        if case .repaired = outcome { pool.meters.ledgerRepair.recordNanoseconds(LedgerMeters.since(started)) }
        return outcome
    }

    private func heal(_ id: LedgerID) async throws -> Outcome {
        for _ in 0..<8 {
            if let outcome = try await attempt(id) { return outcome }
        }
        return .waiting("ledger \(id)'s metadata kept changing under the worker")
    }

    /// One attempt; nil when a compare-and-set lost to another change (read everything again).
    private func attempt(_ id: LedgerID) async throws -> Outcome? {
        guard let (metadata, version) = try await cluster.ledger(id) else {
            // Deleted: nothing left to heal.
            try await cluster.unmark(id) { _ in true }
            return .clean
        }
        guard let (marks, _) = try await cluster.marks(of: id), !marks.marks.isEmpty else { return .clean }
        guard let quorums = Quorums(metadata) else { throw LedgerError.badMetadata(id, "impossible quorums") }
        if metadata.state == .inRecovery { return .waiting("ledger \(id) is being recovered") }
        if metadata.state == .open, let age = openLastFragmentMarkAge(marks, metadata) {
            if age >= settings.openLedgerGrace {
                logger.notice("recovering an open ledger: its marks outlived open_ledger_grace_s, so its writer is taken as gone",
                              metadata: ["ledger_id": "\(id.rawValue)"])
                _ = try await LedgerRecovery(pool: pool).recover(id, masterKey: try await masterKey(id, metadata))
                return nil
            }
        }
        let registered = try await pool.registered()
        let live = Dictionary(registered.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let known = try await cluster.knownBookies()
        let leaving = Set(try await cluster.lostBookies().keys).union(try await cluster.retiringBookies().keys)
        var changed = metadata
        var key: MasterKey?
        var done: [ReplicaMark] = []
        var waiting: [String] = []
        var bytes = 0
        var rng = SystemRandomNumberGenerator()
        marks: for mark in marks.marks {
            let indices = fragments(of: mark, in: metadata)
            let here = live[mark.bookie]
            // A bookie without a cookie has left the cluster (decommissioned): whatever the reason, its copies move.
            let replace = !known.contains(mark.bookie)
                || (mark.replacesBookie && !(mark.reason == .lost && here.map { !$0.readOnly } == true))
            if indices.isEmpty { continue }
            if !replace && here == nil {
                waiting.append("bookie \(mark.bookie) is not registered: its copies wait for it to return or to be declared lost")
                continue
            }
            if key == nil { key = try await masterKey(id, metadata) }
            var chosen: BookieID?
            for i in indices {
                guard let position = changed.fragments[i].bookies.firstIndex(of: mark.bookie) else { continue }
                var target = mark.bookie
                if replace {
                    if let c = chosen, !changed.fragments[i].bookies.contains(c) {
                        target = c
                    } else {
                        // A registered bookie may be unreachable (just killed, its lease not yet expired): place
                        // again without it, as a writer does.
                        var unreachable: Set<BookieID> = []
                        while true {
                            do {
                                target = try placement.replacement(
                                    for: position, in: changed.fragments[i].bookies, quorums: quorums, from: registered,
                                    excluding: leaving.union(unreachable).union([mark.bookie]), preferring: local?.id,
                                    using: &rng).bookies[0]
                            } catch {
                                waiting.append("no bookie can take \(mark.bookie)'s copies of ledger \(id): \(error.message)")
                                continue marks
                            }
                            if (try? await pool.client(for: target, lane: id.rawValue)) != nil { break }
                            unreachable.insert(target)
                        }
                        chosen = target
                    }
                }
                let entries = try await entriesToCopy(id, metadata: changed, fragment: i, position: position, mark: mark,
                                                      inPlace: !replace)
                bytes += try await copy(id, entries: entries, fragment: changed.fragments[i], position: position,
                                        quorums: quorums, to: target, key: key!, live: live)
                changed.fragments[i].bookies[position] = target
            }
            done.append(mark)
        }
        if changed != metadata {
            do {
                _ = try await cluster.updateLedger(id, changed, ifVersion: version)
            } catch MetadataError.versionConflict {
                return nil  // copies are idempotent: the next attempt, on the new metadata, makes them again
            }
            for (old, new) in zip(metadata.fragments, changed.fragments) where old != new {
                for (position, (a, b)) in zip(old.bookies, new.bookies).enumerated() where a != b {
                    logger.notice("bookie replaced in a ledger fragment after its entries were copied", metadata: [
                        "ledger_id": "\(id.rawValue)", "bookie_id": "\(a)", "replacement": "\(b)",
                        "first_entry": "\(old.firstEntry.rawValue)", "position": "\(position)"])
                }
            }
        }
        // A mark goes once its work is done (and not changed meanwhile), or once no fragment names its bookie
        // any more (a writer or another worker replaced it).
        let named = Set(changed.fragments.flatMap(\.bookies))
        let openLast = changed.state == .open ? Set(changed.fragments.last!.bookies) : []
        let left = try await cluster.unmark(id) { mark in
            !named.contains(mark.bookie) || (done.contains(mark) && !openLast.contains(mark.bookie))
        }
        if !left.isEmpty && waiting.isEmpty {
            waiting.append("the open ledger's writer holds its last fragment; it is recovered \(Int(settings.openLedgerGrace.seconds)) s after the mark if the writer does not replace the bookie itself")
        }
        return waiting.isEmpty ? .repaired(bytes: bytes) : .waiting(waiting.joined(separator: "\n"))
    }

    /// How long the oldest mark touching an OPEN ledger's last fragment has waited, or nil when none does.
    private func openLastFragmentMarkAge(_ marks: LedgerMarks, _ metadata: LedgerMetadata) -> Duration? {
        let last = metadata.fragments.last!
        let touching = marks.marks.filter { mark in
            last.bookies.contains(mark.bookie) && (mark.fragments.isEmpty || mark.fragments.contains(last.firstEntry.rawValue))
        }
        guard let oldest = touching.map(\.since).min() else { return nil }
        return .milliseconds(max(0, Int64(Date().timeIntervalSince1970 * 1000) - oldest))
    }

    /// Indices of the fragments `mark` concerns: those naming its bookie (and listed, when it lists), except
    /// an OPEN ledger's last, which its writer owns.
    func fragments(of mark: ReplicaMark, in metadata: LedgerMetadata) -> [Int] {
        metadata.fragments.indices.filter { i in
            let fragment = metadata.fragments[i]
            guard fragment.bookies.contains(mark.bookie) else { return false }
            if metadata.state != .closed && i == metadata.fragments.count - 1 { return false }
            return mark.fragments.isEmpty || mark.fragments.contains(fragment.firstEntry.rawValue)
        }
    }

    /// The entries position `position` of fragment `fragment` must hold (those the mark names, if it names
    /// some). In place, those the bookie already holds intact are left out, unless the mark says they are damaged.
    private func entriesToCopy(_ id: LedgerID, metadata: LedgerMetadata, fragment: Int, position: Int,
                               mark: ReplicaMark, inPlace: Bool) async throws -> [Int64] {
        let quorums = Quorums(metadata)!
        let range = Self.entryRange(of: fragment, in: metadata)
        guard let range else { return [] }
        var wanted: [Int64]
        if let listed = mark.entries {
            wanted = listed.filter { range.contains($0) && quorums.writeSet(of: EntryID($0)).contains(position) }
        } else {
            wanted = range.filter { quorums.writeSet(of: EntryID($0)).contains(position) }
        }
        guard inPlace, mark.reason != .damaged else { return wanted }
        let stored: [EntryRange]
        do {
            stored = try await pool.client(for: mark.bookie, lane: id.rawValue).storedEntries(of: id)
        } catch let failure as BookieClient.Failure where failure.status == .noLedger {
            stored = []
        }
        wanted.removeAll { e in stored.contains { $0.first.rawValue <= e && e <= $0.last.rawValue } }
        return wanted
    }

    /// The entry ids fragment `index` covers, or nil when it holds none (a closed ledger that ended before it).
    public static func entryRange(of index: Int, in metadata: LedgerMetadata) -> ClosedRange<Int64>? {
        let first = metadata.fragments[index].firstEntry.rawValue
        var last: Int64
        if index + 1 < metadata.fragments.count {
            last = metadata.fragments[index + 1].firstEntry.rawValue - 1
            if metadata.state == .closed { last = min(last, metadata.lastEntry.rawValue) }
        } else {
            precondition(metadata.state == .closed, "an open ledger's last fragment has no end yet")
            last = metadata.lastEntry.rawValue
        }
        return last >= first ? first...last : nil
    }

    /// The ledger's master key, from any of its live bookies.
    private func masterKey(_ id: LedgerID, _ metadata: LedgerMetadata) async throws -> MasterKey {
        var reasons: [String] = []
        for bookie in Set(metadata.fragments.flatMap(\.bookies)).sorted() {
            do {
                switch try await pool.send(.ledgerKey(ledger: id), to: bookie, lane: id.rawValue, timeout: settings.requestTimeout) {
                case .masterKey(let key): return key
                case .failed(let status, let message): reasons.append("\(bookie): \(status) (\(message))")
                case let other: reasons.append("\(bookie): unexpected answer \(other)")
                }
            } catch {
                reasons.append("\(bookie): \(error)")
            }
        }
        throw LedgerError.keyUnavailable(id, reasons)
    }
}
