import DLogMetadata
import DLogWire
import Foundation
import Logging
import Synchronization

/// Turns losses into marks (docs/recovery.md). Every bookie with autorecovery runs one; the one holding the
/// lease-bound `/recovery/auditor` key acts, the others wait to take over when its lease ends.
///
/// Each tick (at every change of registrations, retirements or the audit request, and at least once a second)
/// the auditor compares the bookies that have a cookie with those registered.
/// A bookie missing for `lostBookieGrace` is declared lost and every ledger naming it is marked; so a restart
/// or an upgrade within the grace copies nothing. A bookie being retired has its ledgers marked once. Every
/// `auditInterval`, and when `dlogctl recovery audit` asks, the audit compares each closed ledger's metadata
/// with what its bookies hold (LIST_ENTRIES), which finds copies lost to a wiped disk or a written-around add.
public final class Auditor: Sendable {
    public struct Settings: Sendable {
        public var lostBookieGrace: Duration = .seconds(60)
        public var auditInterval: Duration = .seconds(6 * 3600)
        public var tick: Duration = .seconds(1)
        public var requestTimeout: Duration = .seconds(10)
        public init() {}
    }

    /// What the auditor has seen and done, for status.
    public struct Status: Sendable {
        public var isAuditor = false
        public var audits = 0
        public var lastAuditLedgers = 0
        public var lastAuditMarked = 0
        public var declaredLost = 0
        /// Ledgers with marks, counted by the auditor at most every 10 s (nil when not the auditor).
        public var underReplicated: Int?
    }

    private struct State {
        var status = Status()
        var missingSince: [BookieID: ContinuousClock.Instant] = [:]
        /// When each retiring bookie's ledgers were last marked (again every 10 s: ledgers created while it
        /// still looked writable come to name it after the first marking).
        var retiringMarked: [BookieID: ContinuousClock.Instant] = [:]
        var lastAudit: ContinuousClock.Instant?
        var auditRequest: Version?
        var lastCount: ContinuousClock.Instant?
    }

    public let me: BookieID
    public let pool: BookiePool
    public let settings: Settings
    let logger: Logger
    private let state = Mutex(State())

    public init(me: BookieID, pool: BookiePool, settings: Settings = Settings(), logger: Logger) {
        self.me = me
        self.pool = pool
        self.settings = settings
        self.logger = logger
    }

    var cluster: Cluster { pool.cluster }
    public var status: Status { state.withLock { $0.status } }

    /// Stands for election and, while elected, audits; until cancelled. It watches registrations, retirements
    /// and audit requests, so a bookie's departure starts its grace at once, and looks again at least every tick
    /// (the grace runs out between changes).
    public func run(lease: @escaping @Sendable () async throws -> LeaseID) async {
        let changed = Doorbell()
        let watcher = changed.ring(onChangesTo: [.prefix(ClusterKeys.bookies), .prefix(RecoveryKeys.retiring),
                                                 .key(RecoveryKeys.auditRequest)], in: cluster.store, retry: settings.tick)
        defer { watcher.cancel() }
        while !Task.isCancelled {
            do {
                let held = try await lease()
                if try await cluster.hold(RecoveryKeys.auditor, RecoveryHolder(bookie: me), lease: held) {
                    if !state.withLock({ $0.status.isAuditor }) {
                        logger.notice("elected auditor", metadata: ["bookie_id": "\(me)"])
                        // A new term starts every clock afresh: a bookie seen missing only now gets its full grace.
                        let request = try await cluster.store.get(RecoveryKeys.auditRequest)?.version
                        state.withLock { s in
                            s = State(status: s.status, lastAudit: .now, auditRequest: request)
                            s.status.isAuditor = true
                        }
                    }
                    try await tick()
                } else if state.withLock({ $0.status.isAuditor }) {
                    logger.notice("no longer the auditor", metadata: ["bookie_id": "\(me)"])
                    state.withLock { $0.status.isAuditor = false; $0.status.underReplicated = nil }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("auditor round failed; retrying", metadata: ["error": "\(error)"])
            }
            await changed.wait(upTo: settings.tick)
        }
    }

    /// One look at the bookies, the retirements and (when due) the ledgers.
    public func tick() async throws {
        let known = try await cluster.knownBookies()
        let registered = Set(try await pool.registered().map(\.id))
        let lost = try await cluster.lostBookies()
        let retiring = try await cluster.retiringBookies()
        let now = ContinuousClock.now
        for bookie in known.sorted() {
            if registered.contains(bookie) {
                state.withLock { _ = $0.missingSince.removeValue(forKey: bookie) }
                if lost[bookie] != nil {
                    try await cluster.forgetLost(bookie)
                    logger.notice("a lost bookie is back; its marks are repaired in place where it still holds copies",
                                  metadata: ["bookie_id": "\(bookie)"])
                }
                continue
            }
            let since = state.withLock { s in
                if s.missingSince[bookie] == nil { s.missingSince[bookie] = now }
                return s.missingSince[bookie]!
            }
            guard lost[bookie] == nil, now - since >= settings.lostBookieGrace else { continue }
            // Marks first, then the declaration: a failure in between (metadata unreachable) leaves the bookie
            // undeclared, so the next tick marks again (marks merge) rather than never marking the rest.
            let marked = try await cluster.markLedgers(naming: bookie, reason: .lost)
            guard try await cluster.declareLost(bookie) else { continue }  // decommissioned since `known` was read
            state.withLock { $0.status.declaredLost += 1 }
            logger.warning("bookie declared lost: missing longer than lost_bookie_grace_s; its ledgers are marked for re-replication",
                           metadata: ["bookie_id": "\(bookie)", "ledgers": "\(marked)",
                                      "grace_s": "\(Int(settings.lostBookieGrace.components.seconds))"])
        }
        // Records of bookies that are gone for good (decommissioned: no cookie) are dropped.
        for bookie in Set(lost.keys).union(retiring.keys) where !known.contains(bookie) {
            try await cluster.forgetLost(bookie)
            try await cluster.forgetRetiring(bookie)
        }
        for bookie in retiring.keys.sorted() where known.contains(bookie) {
            let last = state.withLock { $0.retiringMarked[bookie] }
            guard last.map({ now - $0 >= .seconds(10) }) ?? true else { continue }
            let marked = try await cluster.markLedgers(naming: bookie, reason: .retiring)
            state.withLock { $0.retiringMarked[bookie] = now }
            if last == nil {
                logger.notice("retiring bookie's ledgers marked", metadata: ["bookie_id": "\(bookie)", "ledgers": "\(marked)"])
            }
        }
        if state.withLock({ s in s.lastCount.map { now - $0 >= .seconds(10) } ?? true }) {
            var count = 0
            try await cluster.forEachMarked { _, _, _ in count += 1 }
            state.withLock { s in
                s.lastCount = now
                s.status.underReplicated = count
            }
        }
        let request = try await cluster.store.get(RecoveryKeys.auditRequest)?.version
        let due = state.withLock { s in
            s.auditRequest != request || s.lastAudit.map { now - $0 >= settings.auditInterval } ?? true
        }
        if due {
            state.withLock { $0.auditRequest = request }
            try await audit(lost: Set(lost.keys), retiring: Set(retiring.keys), registered: registered)
        }
    }

    /// Compares every closed ledger with what its live bookies hold, and marks what is missing.
    public func audit(lost: Set<BookieID>, retiring: Set<BookieID>, registered: Set<BookieID>) async throws {
        let started = ContinuousClock.now
        var ledgers = 0, marked = 0
        var closed: [(LedgerID, LedgerMetadata)] = []
        try await cluster.forEachLedger { id, metadata, _ in
            ledgers += 1
            if metadata.state == .closed { closed.append((id, metadata)) }
        }
        for (id, metadata) in closed {
            try Task.checkCancellation()
            var marks: [ReplicaMark] = []
            for bookie in Set(metadata.fragments.flatMap(\.bookies)).sorted() {
                if lost.contains(bookie) || retiring.contains(bookie) {
                    marks.append(ReplicaMark(bookie: bookie, reason: lost.contains(bookie) ? .lost : .retiring))
                    continue
                }
                guard registered.contains(bookie) else { continue }  // missing: the grace decides
                marks += try await missing(on: bookie, of: id, metadata)
            }
            // A leaving bookie already marked for any reason needs no second mark.
            let existing = try await cluster.marks(of: id)?.0.marks ?? []
            let fresh = marks.filter { mark in
                !(mark.replacesBookie && existing.contains { $0.bookie == mark.bookie && $0.replacesBookie })
            }
            if !fresh.isEmpty, try await cluster.mark(id, fresh) {
                marked += 1
                for mark in fresh where mark.reason == .missing {
                    logger.warning("audit found entries missing on a bookie", metadata: [
                        "ledger_id": "\(id.rawValue)", "bookie_id": "\(mark.bookie)", "entries": "\(mark.entries?.count ?? 0)"])
                }
            }
        }
        state.withLock { s in
            s.lastAudit = .now
            s.status.audits += 1
            s.status.lastAuditLedgers = ledgers
            s.status.lastAuditMarked = marked
        }
        logger.info("audit done", metadata: ["ledgers": "\(ledgers)", "checked": "\(closed.count)", "marked": "\(marked)",
                                             "duration_ms": "\((ContinuousClock.now - started).components.seconds * 1000)"])
    }

    /// Marks for the entries `bookie` should hold of ledger `id` and does not (one per fragment).
    private func missing(on bookie: BookieID, of id: LedgerID, _ metadata: LedgerMetadata) async throws -> [ReplicaMark] {
        guard let quorums = Quorums(metadata) else { return [] }
        let stored: [EntryRange]
        do {
            switch try await pool.send(.listEntries(ledger: id, from: EntryID(0), rangesMax: 65_536), to: bookie,
                                       lane: id.rawValue, timeout: settings.requestTimeout) {
            case .entries(let ranges, nil): stored = ranges
            case .entries(_, _?):
                // More than one answer's worth of ranges (a ledger full of holes): page through the whole list.
                stored = try await pool.client(for: bookie, lane: id.rawValue).storedEntries(of: id)
            case .failed(.noLedger, _): stored = []
            case .failed(let status, let message):
                logger.warning("audit could not list a ledger's entries on a bookie", metadata: [
                    "ledger_id": "\(id.rawValue)", "bookie_id": "\(bookie)", "error": "\(status): \(message)"])
                return []
            default: return []
            }
        } catch {
            logger.warning("audit could not reach a bookie", metadata: ["ledger_id": "\(id.rawValue)", "bookie_id": "\(bookie)",
                                                                        "error": "\(error)"])
            return []
        }
        var marks: [ReplicaMark] = []
        for (i, fragment) in metadata.fragments.enumerated() {
            guard let position = fragment.bookies.firstIndex(of: bookie),
                  let range = ReplicationWorker.entryRange(of: i, in: metadata) else { continue }
            var absent: [Int64] = []
            var r = stored.startIndex
            for e in range where quorums.writeSet(of: EntryID(e)).contains(position) {
                while r < stored.endIndex && stored[r].last.rawValue < e { r += 1 }
                if r == stored.endIndex || stored[r].first.rawValue > e { absent.append(e) }
            }
            if !absent.isEmpty {
                marks.append(ReplicaMark(bookie: bookie, reason: .missing, fragments: [fragment.firstEntry.rawValue],
                                         entries: absent.count <= 100_000 ? absent : nil))
            }
        }
        return marks
    }
}
