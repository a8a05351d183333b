import DLogWire
import Foundation

/// What a live bookie publishes about itself, under its lease.
public struct BookieRegistration: Codable, Hashable, Sendable {
    public struct Disk: Codable, Hashable, Sendable {
        public var path: String
        /// "journal" or "ledger".
        public var role: String
        public var totalBytes: UInt64
        public var freeBytes: UInt64
        public init(path: String, role: String, totalBytes: UInt64, freeBytes: UInt64) {
            self.path = path
            self.role = role
            self.totalBytes = totalBytes
            self.freeBytes = freeBytes
        }
    }

    public var id: BookieID
    /// host:port clients connect to.
    public var address: String
    /// Placement label, e.g. "/zone-a/rack-3".
    public var rack: String
    public var readOnly: Bool
    public var disks: [Disk]
    /// Milliseconds since the epoch.
    public var startedAt: Int64

    public init(id: BookieID, address: String, rack: String, readOnly: Bool, disks: [Disk], startedAt: Int64) {
        self.id = id
        self.address = address
        self.rack = rack
        self.readOnly = readOnly
        self.disks = disks
        self.startedAt = startedAt
    }
}

/// The bookie's disk identity as recorded in metadata: its disks' own instance id (their COOKIE files) and
/// its directories, tied to the cluster instance.
public struct BookieCookie: Codable, Hashable, Sendable {
    public var cluster: String
    public var disks: String
    public var journalDirectories: [String]
    public var ledgerDirectories: [String]

    public init(cluster: String, disks: String, journalDirectories: [String], ledgerDirectories: [String]) {
        self.cluster = cluster
        self.disks = disks
        self.journalDirectories = journalDirectories
        self.ledgerDirectories = ledgerDirectories
    }

    /// What differs from `other` (the recorded cookie), in words, or nil when they match.
    public func mismatch(recorded other: BookieCookie) -> String? {
        if cluster != other.cluster { return "it was recorded for cluster \(other.cluster), this cluster is \(cluster)" }
        if disks != other.disks {
            return "its disks carry instance \(disks) but metadata recorded \(other.disks) (wiped or replaced disks?)"
        }
        if journalDirectories != other.journalDirectories {
            return "journal directories are \(journalDirectories), metadata recorded \(other.journalDirectories)"
        }
        if ledgerDirectories != other.ledgerDirectories {
            return "ledger directories are \(ledgerDirectories), metadata recorded \(other.ledgerDirectories)"
        }
        return nil
    }
}

extension Cluster {
    // MARK: Registration

    /// Registers a live bookie under `lease`. A registration left by this bookie's previous life (SIGKILL,
    /// lease not yet expired) is waited out for up to `waitMax`; one that stays is another live bookie.
    public func register(_ registration: BookieRegistration, lease: LeaseID, waitMax: Duration) async throws {
        let deadline = ContinuousClock.now + waitMax
        while true {
            let other = ClusterKeys.registration(registration.id, readOnly: !registration.readOnly)
            if let stale = try await store.get(other), stale.lease != lease {
                guard ContinuousClock.now < deadline else { throw ClusterError.duplicateBookie(registration.id) }
                try await Task.sleep(for: .milliseconds(250))
                continue
            }
            do {
                try await store.create(ClusterKeys.registration(registration.id, readOnly: registration.readOnly),
                                       value: Self.encode(registration), lease: lease)
                return
            } catch MetadataError.keyExists {
                guard ContinuousClock.now < deadline else { throw ClusterError.duplicateBookie(registration.id) }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Waits until no registration of `bookie` is left (one from its previous life lives until that lease
    /// expires); throws `duplicateBookie` if one is still there after `waitMax`: another live bookie has the id.
    public func waitUntilUnregistered(_ bookie: BookieID, waitMax: Duration) async throws {
        let deadline = ContinuousClock.now + waitMax
        while true {
            var present = false
            for readOnly in [false, true] where try await store.get(ClusterKeys.registration(bookie, readOnly: readOnly)) != nil {
                present = true
            }
            if !present { return }
            guard ContinuousClock.now < deadline else { throw ClusterError.duplicateBookie(bookie) }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Moves a registration between writable and read-only in one transaction, keeping its lease.
    public func updateRegistration(_ registration: BookieRegistration, lease: LeaseID) async throws {
        let from = ClusterKeys.registration(registration.id, readOnly: !registration.readOnly)
        let to = ClusterKeys.registration(registration.id, readOnly: registration.readOnly)
        var transaction = Transaction(operations: [.put(key: to, value: Self.encode(registration), lease: lease)])
        if let old = try await store.get(from) {
            transaction.checks.append(.init(key: from, version: old.version))
            transaction.operations.append(.delete(key: from))
        }
        if let current = try await store.get(to) {
            transaction.checks.append(.init(key: to, version: current.version))
        } else {
            transaction.checks.append(.init(key: to, version: .absent))
        }
        _ = try await store.commit(transaction)
    }

    /// Every registered (live) bookie, writable and read-only.
    public func bookies() async throws -> [BookieRegistration] {
        try await store.list(prefix: ClusterKeys.bookies).items.map { try Self.decode(BookieRegistration.self, $0) }
            .sorted { $0.id < $1.id }
    }

    // MARK: Cookies

    /// Records the cookie on the bookie's first start in this cluster; afterwards checks that the disks
    /// still match what was recorded, and refuses by name when they do not.
    public func verifyOrRecordCookie(_ cookie: BookieCookie, bookie: BookieID) async throws {
        let key = ClusterKeys.cookie(bookie)
        if let item = try await store.get(key) {
            let recorded = try Self.decode(BookieCookie.self, item)
            if let what = cookie.mismatch(recorded: recorded) { throw ClusterError.cookieMismatch(bookie: bookie, what: what) }
            return
        }
        do {
            try await store.create(key, value: Self.encode(cookie))
        } catch MetadataError.keyExists {
            try await verifyOrRecordCookie(cookie, bookie: bookie)
        }
    }

    public func cookie(of bookie: BookieID) async throws -> BookieCookie? {
        try await store.get(ClusterKeys.cookie(bookie)).map { try Self.decode(BookieCookie.self, $0) }
    }
}
