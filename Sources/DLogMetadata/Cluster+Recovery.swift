import DLogWire
import Foundation

/// The records of healing (docs/metadata.md, docs/recovery.md):
///
///     /underreplicated/<20-digit id>   the marks of one ledger: which bookie lacks which copies, and why
///     /recovery/auditor                the elected auditor (bound to its lease)
///     /recovery/lost/<bookie>          a bookie the auditor declared lost (missing past the grace period)
///     /recovery/retiring/<bookie>      a bookie being decommissioned (stopped) or drained (live, read-only)
///     /recovery/locks/<20-digit id>    a replication worker's hold on one ledger (bound to its lease)
///     /recovery/workers/<bookie>       a worker's progress counters (bound to its lease)
///     /recovery/audit                  the time of the last on-demand audit request
///
/// Every change to a ledger's marks is a compare-and-set on the record's version, so two auditors, a writer
/// and a worker can each add or remove marks without losing another's. A worker removes a mark only after
/// the ledger's metadata no longer needs it, so a crash anywhere leaves a mark behind, never a record naming
/// a bookie that lacks the data.
public enum RecoveryKeys {
    public static let underReplicated = "/underreplicated/"
    public static let auditor = "/recovery/auditor"
    public static let lost = "/recovery/lost/"
    public static let retiring = "/recovery/retiring/"
    public static let locks = "/recovery/locks/"
    public static let workers = "/recovery/workers/"
    public static let auditRequest = "/recovery/audit"

    public static func marks(_ id: LedgerID) -> String { underReplicated + padded(id) }
    public static func lock(_ id: LedgerID) -> String { locks + padded(id) }
    public static func lost(_ bookie: BookieID) -> String { lost + bookie.rawValue }
    public static func retiring(_ bookie: BookieID) -> String { retiring + bookie.rawValue }
    public static func worker(_ bookie: BookieID) -> String { workers + bookie.rawValue }

    public static func ledgerID(fromMarksKey key: String) -> LedgerID? {
        guard key.hasPrefix(underReplicated) else { return nil }
        return UInt64(key.dropFirst(underReplicated.count)).map { LedgerID($0) }
    }

    static func padded(_ id: LedgerID) -> String {
        let digits = String(id.rawValue)
        return String(repeating: "0", count: 20 - digits.count) + digits
    }
}

/// One reason a bookie of a ledger lacks copies it should hold.
public struct ReplicaMark: Codable, Hashable, Sendable {
    public enum Reason: String, Codable, Sendable, CaseIterable {
        /// The bookie has been missing past `lost_bookie_grace_s`: its copies are gone until proven otherwise.
        case lost
        /// The writer went on without it (no replacement at the time): entries from `fragments` lack its copy.
        case writtenAround = "written-around"
        /// Scrub found these entries damaged on it.
        case damaged
        /// An audit found these entries missing on it (a wiped or replaced disk, a lost write).
        case missing
        /// It is being decommissioned or drained: every copy moves to another bookie.
        case retiring
    }

    public var bookie: BookieID
    public var reason: Reason
    /// First entries of the fragments concerned; empty: every fragment naming the bookie.
    public var fragments: [Int64]
    /// The entries concerned (damaged, missing); nil: every entry the bookie holds in those fragments.
    public var entries: [Int64]?
    /// When the mark was first made (milliseconds since the epoch).
    public var since: Int64

    public init(bookie: BookieID, reason: Reason, fragments: [Int64] = [], entries: [Int64]? = nil,
                since: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) {
        self.bookie = bookie
        self.reason = reason
        self.fragments = fragments
        self.entries = entries
        self.since = since
    }

    /// Whether the copy moves to another bookie (the marked one is leaving) rather than back to it.
    public var replacesBookie: Bool { reason == .lost || reason == .retiring }
}

/// All marks of one ledger.
public struct LedgerMarks: Codable, Hashable, Sendable {
    public var marks: [ReplicaMark]
    public init(marks: [ReplicaMark] = []) { self.marks = marks }

    /// Adds `mark`, folding it into one of the same bookie and reason (fragments and entries united, the
    /// earliest time kept). Returns false when nothing changed.
    @discardableResult
    public mutating func merge(_ mark: ReplicaMark) -> Bool {
        guard let i = marks.firstIndex(where: { $0.bookie == mark.bookie && $0.reason == mark.reason }) else {
            marks.append(mark)
            return true
        }
        let old = marks[i]
        var merged = old
        // An empty fragment list means "all of them", which absorbs any list.
        merged.fragments = old.fragments.isEmpty || mark.fragments.isEmpty ? [] : Array(Set(old.fragments + mark.fragments)).sorted()
        if let a = old.entries, let b = mark.entries {
            merged.entries = Array(Set(a + b)).sorted()
        } else {
            merged.entries = nil
        }
        merged.since = min(old.since, mark.since)
        marks[i] = merged
        return merged != old
    }

    public var oldest: Int64? { marks.map(\.since).min() }
}

/// Who the elected auditor is, and what a worker has done; both bound to the owner's lease.
public struct RecoveryHolder: Codable, Hashable, Sendable {
    public var bookie: BookieID
    public var since: Int64
    public init(bookie: BookieID, since: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) {
        self.bookie = bookie
        self.since = since
    }
}

/// A bookie leaving the cluster: `drain` keeps it running, read-only, until its copies have moved.
public struct RetiringBookie: Codable, Hashable, Sendable {
    public var drain: Bool
    public var since: Int64
    public init(drain: Bool, since: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) {
        self.drain = drain
        self.since = since
    }
}

/// A replication worker's running totals, published about once a second.
public struct WorkerProgress: Codable, Hashable, Sendable {
    public var bookie: BookieID
    public var bytesCopied: Int64 = 0
    public var entriesCopied: Int64 = 0
    public var ledgersRepaired: Int64 = 0
    public var copyErrors: Int64 = 0
    /// The ledger being worked on, if any.
    public var ledger: UInt64?
    /// Why marks are waiting, when they are (no replacement bookie, an open ledger's writer alive…), a line each.
    public var waiting: String?
    public var updatedAt: Int64 = 0
    public init(bookie: BookieID) { self.bookie = bookie }
}

extension Cluster {
    // MARK: Marks

    public func marks(of id: LedgerID) async throws -> (LedgerMarks, Version)? {
        guard let item = try await store.get(RecoveryKeys.marks(id)) else { return nil }
        return (try Self.decode(LedgerMarks.self, item), item.version)
    }

    /// Adds marks to a ledger by compare-and-set, retrying a lost race (another auditor, writer or worker
    /// changed them). Returns false when the marks were there already.
    @discardableResult
    public func mark(_ id: LedgerID, _ new: [ReplicaMark]) async throws -> Bool {
        for _ in 0..<32 {
            let current = try await marks(of: id)
            var marks = current?.0 ?? LedgerMarks()
            var changed = false
            for mark in new { changed = marks.merge(mark) || changed }
            guard changed else { return false }
            do {
                _ = try await store.commit(Transaction(
                    checks: [.init(key: RecoveryKeys.marks(id), version: current?.1 ?? .absent)],
                    operations: [.put(key: RecoveryKeys.marks(id), value: Self.encode(marks), lease: nil)]))
                return true
            } catch let error as MetadataError where error.isConflict {
                continue
            }
        }
        throw MetadataError.unavailable("could not mark ledger \(id): 32 attempts lost to concurrent changes")
    }

    /// Removes the marks `remove` selects, by compare-and-set; the record goes with its last mark. Marks added
    /// meanwhile by others survive (a lost race is read again). Returns the marks left.
    @discardableResult
    public func unmark(_ id: LedgerID, where remove: (ReplicaMark) -> Bool) async throws -> [ReplicaMark] {
        for _ in 0..<32 {
            guard let (marks, version) = try await self.marks(of: id) else { return [] }
            let left = marks.marks.filter { !remove($0) }
            guard left.count != marks.marks.count else { return left }
            let key = RecoveryKeys.marks(id)
            let operation: Transaction.Operation = left.isEmpty
                ? .delete(key: key) : .put(key: key, value: Self.encode(LedgerMarks(marks: left)), lease: nil)
            do {
                _ = try await store.commit(Transaction(checks: [.init(key: key, version: version)], operations: [operation]))
                return left
            } catch let error as MetadataError where error.isConflict {
                continue
            }
        }
        throw MetadataError.unavailable("could not unmark ledger \(id): 32 attempts lost to concurrent changes")
    }

    /// Every marked ledger in id order, a page at a time.
    public func forEachMarked(_ body: (LedgerID, LedgerMarks, Version) async throws -> Void) async throws {
        try await forEachItem(under: RecoveryKeys.underReplicated) { item in
            guard let id = RecoveryKeys.ledgerID(fromMarksKey: item.key) else {
                throw ClusterError.corruptRecord(key: item.key, why: "not an under-replication key")
            }
            try await body(id, try Self.decode(LedgerMarks.self, item), item.version)
        }
    }

    /// Marks every ledger with a fragment naming `bookie`. Returns how many ledgers were marked.
    @discardableResult
    public func markLedgers(naming bookie: BookieID, reason: ReplicaMark.Reason) async throws -> Int {
        var named: [LedgerID] = []
        try await forEachLedger { id, metadata, _ in
            if metadata.fragments.contains(where: { $0.bookies.contains(bookie) }) { named.append(id) }
        }
        let since = Int64(Date().timeIntervalSince1970 * 1000)
        for id in named { try await mark(id, [ReplicaMark(bookie: bookie, reason: reason, since: since)]) }
        return named.count
    }

    /// The ledgers with a fragment naming `bookie`, counted, with the bytes they hold in all.
    public func ledgersNaming(_ bookie: BookieID) async throws -> (count: Int, bytes: UInt64, first: [LedgerID]) {
        var count = 0, bytes: UInt64 = 0
        var first: [LedgerID] = []
        try await forEachLedger { id, metadata, _ in
            guard metadata.fragments.contains(where: { $0.bookies.contains(bookie) }) else { return }
            count += 1
            bytes += metadata.length
            if first.count < 5 { first.append(id) }
        }
        return (count, bytes, first)
    }

    // MARK: Lease-bound holders (the auditor, ledger locks)

    /// Takes `key` for `holder` under `lease` if nobody holds it. True when taken (or held by this lease already).
    public func hold(_ key: String, _ holder: RecoveryHolder, lease: LeaseID) async throws -> Bool {
        do {
            try await store.create(key, value: Self.encode(holder), lease: lease)
            return true
        } catch MetadataError.keyExists {
            return try await store.get(key)?.lease == lease
        }
    }

    /// Lets go of `key` if this lease holds it.
    public func release(_ key: String, lease: LeaseID) async throws {
        guard let item = try await store.get(key), item.lease == lease else { return }
        do {
            try await store.delete(key, ifVersion: item.version)
        } catch let error as MetadataError where error.isConflict {
            // Taken over meanwhile (our lease expired): not ours to delete.
        }
    }

    public func auditor() async throws -> RecoveryHolder? {
        try await store.get(RecoveryKeys.auditor).map { try Self.decode(RecoveryHolder.self, $0) }
    }

    // MARK: Lost and retiring bookies

    public func lostBookies() async throws -> [BookieID: Int64] {
        var out: [BookieID: Int64] = [:]
        for item in try await store.list(prefix: RecoveryKeys.lost).items {
            out[BookieID(String(item.key.dropFirst(RecoveryKeys.lost.count)))] = try Self.decode(RecoveryHolder.self, item).since
        }
        return out
    }

    /// Records `bookie` as lost, only while its cookie is there: a decommission that finished after the auditor
    /// looked (it deletes the cookie and any lost record together) must not leave a lost record behind it. False
    /// when the bookie had left the cluster.
    @discardableResult
    public func declareLost(_ bookie: BookieID) async throws -> Bool {
        guard let cookie = try await store.get(ClusterKeys.cookie(bookie)) else { return false }
        do {
            _ = try await store.commit(Transaction(checks: [.init(key: ClusterKeys.cookie(bookie), version: cookie.version)],
                                                   operations: [.put(key: RecoveryKeys.lost(bookie),
                                                                     value: Self.encode(RecoveryHolder(bookie: bookie)), lease: nil)]))
        } catch MetadataError.versionConflict {
            return try await store.get(ClusterKeys.cookie(bookie)) == nil ? false : try await declareLost(bookie)
        }
        return true
    }

    public func forgetLost(_ bookie: BookieID) async throws {
        _ = try await store.commit(Transaction(operations: [.delete(key: RecoveryKeys.lost(bookie))]))
    }

    public func forgetRetiring(_ bookie: BookieID) async throws {
        _ = try await store.commit(Transaction(operations: [.delete(key: RecoveryKeys.retiring(bookie))]))
    }

    public func retiringBookies() async throws -> [BookieID: RetiringBookie] {
        var out: [BookieID: RetiringBookie] = [:]
        for item in try await store.list(prefix: RecoveryKeys.retiring).items {
            out[BookieID(String(item.key.dropFirst(RecoveryKeys.retiring.count)))] = try Self.decode(RetiringBookie.self, item)
        }
        return out
    }

    /// Records that `bookie` is leaving (kept if it is already recorded).
    public func retire(_ bookie: BookieID, drain: Bool) async throws {
        let key = RecoveryKeys.retiring(bookie)
        if let item = try await store.get(key), try Self.decode(RetiringBookie.self, item).drain == drain { return }
        _ = try await store.commit(Transaction(operations: [.put(key: key, value: Self.encode(RetiringBookie(drain: drain)), lease: nil)]))
    }

    public func workerProgress() async throws -> [WorkerProgress] {
        try await store.list(prefix: RecoveryKeys.workers).items.map { try Self.decode(WorkerProgress.self, $0) }
    }

    public func publish(_ progress: WorkerProgress, lease: LeaseID) async throws {
        _ = try await store.commit(Transaction(operations: [
            .put(key: RecoveryKeys.worker(progress.bookie), value: Self.encode(progress), lease: lease)]))
    }

    /// Known bookies: those with a cookie (registered now or not).
    public func knownBookies() async throws -> Set<BookieID> {
        Set(try await store.list(prefix: "/cookies/").items.map { BookieID(String($0.key.dropFirst("/cookies/".count))) })
    }
}

extension MetadataError {
    /// A compare-and-set lost to a concurrent change: read again and retry.
    public var isConflict: Bool {
        switch self {
        case .versionConflict, .keyExists, .noSuchKey: return true
        default: return false
        }
    }
}

extension Cluster {
    // MARK: Retiring a bookie

    /// Starts retiring `bookie`: records it as retiring and marks every ledger naming it, so workers move its
    /// copies. A decommission is for a stopped (or lost) bookie; a drain for a live one, which turns read-only
    /// and is refused when the other writable bookies could not hold the largest ensemble it is part of.
    /// Returns how many ledgers were marked.
    @discardableResult
    public func startRetirement(_ bookie: BookieID, drain: Bool) async throws -> Int {
        guard try await store.get(ClusterKeys.cookie(bookie)) != nil else { throw ClusterError.unknownBookie(bookie) }
        let registrations = try await bookies()
        let running = registrations.first { $0.id == bookie }
        if drain {
            guard running != nil else { throw ClusterError.bookieNotRunning(bookie) }
            let retiring = try await retiringBookies()
            let writable = registrations.filter { !$0.readOnly && $0.id != bookie && retiring[$0.id] == nil }.count
            var widest: (LedgerID, Int)?
            try await forEachLedger { id, metadata, _ in
                guard metadata.fragments.contains(where: { $0.bookies.contains(bookie) }) else { return }
                if metadata.ensembleSize > widest?.1 ?? 0 { widest = (id, metadata.ensembleSize) }
            }
            if let (ledger, needed) = widest, needed > writable {
                throw ClusterError.tooFewBookies(bookie, needed: needed, available: writable, ledger: ledger)
            }
        } else if let running {
            throw ClusterError.bookieRunning(bookie, state: running.readOnly ? "read-only" : "writable")
        }
        try await retire(bookie, drain: drain)
        return try await markLedgers(naming: bookie, reason: .retiring)
    }

    /// Ends a retirement once no ledger names the bookie: its cookie and its recovery records go in one
    /// transaction (a drained bookie then leaves the registry by itself). Refuses while a ledger names it, and
    /// a stopped bookie's retirement while it runs again.
    public func finishRetirement(_ bookie: BookieID) async throws {
        let holding = try await ledgersNaming(bookie)
        guard holding.count == 0 else {
            throw ClusterError.bookieHoldsData(bookie, ledgers: holding.first, count: holding.count)
        }
        guard let cookie = try await store.get(ClusterKeys.cookie(bookie)) else { throw ClusterError.unknownBookie(bookie) }
        let record = try await store.get(RecoveryKeys.retiring(bookie))
        let drain = try record.map { try Self.decode(RetiringBookie.self, $0).drain } ?? false
        var checks = [Transaction.Check(key: ClusterKeys.cookie(bookie), version: cookie.version)]
        if !drain {
            for readOnly in [false, true] {
                checks.append(.init(key: ClusterKeys.registration(bookie, readOnly: readOnly), version: .absent))
            }
        }
        do {
            _ = try await store.commit(Transaction(checks: checks, operations: [
                .delete(key: ClusterKeys.cookie(bookie)), .delete(key: RecoveryKeys.retiring(bookie)),
                .delete(key: RecoveryKeys.lost(bookie))]))
        } catch MetadataError.keyExists(let key) {
            throw ClusterError.bookieRunning(bookie, state: key.hasPrefix("/bookies/readonly/") ? "read-only" : "writable")
        }
    }
}
