import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation

/// Healing settings for test clusters: a short grace and lease, so losses are acted on within seconds.
let fastHealing = """
    lost_bookie_grace_s = 3
    registration_ttl_s = 3
    open_ledger_grace_s = 5
    """

/// Writes `count` ledgers of `entries` entries each and closes them; returns their ids.
func writeClosedLedgers(_ pool: BookiePool, count: Int, entries: Int, quorums: Quorums,
                        size: Int = 300) async throws -> [LedgerID] {
    var ids: [LedgerID] = []
    var rng = SystemRandomNumberGenerator()
    let allocator = LedgerIDAllocator(cluster: pool.cluster)
    for _ in 0..<count {
        let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: pool, allocator: allocator, using: &rng)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<entries {
                let payload = Array("ledger \(writer.id.rawValue) entry \(n) ".utf8) + Array(repeating: UInt8(n & 0xFF), count: size)
                group.addTask { _ = try await writer.append(payload) }
            }
            try await group.waitForAll()
        }
        try await writer.close()
        ids.append(writer.id)
    }
    return ids
}

/// A new ledger, E3/Qw3/Qa2, password "pw", to write into.
func newE3Ledger(_ pool: BookiePool) async throws -> LedgerWriter {
    var rng = SystemRandomNumberGenerator()
    return try await LedgerWriter.create(quorums: Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!, password: "pw",
                                         pool: pool, allocator: LedgerIDAllocator(cluster: pool.cluster), using: &rng)
}

/// Polls `condition` until it holds, or throws after `timeout` naming `what`.
/// `cluster`: whose bookies' last log lines to put in the error.
func eventually(_ what: String, timeout: Duration = .seconds(90), cluster: ProcessCluster? = nil,
                _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    var lastError = ""
    while ContinuousClock.now < deadline {
        do {
            if try await condition() { return }
        } catch {
            lastError = "; last error: \(error)"
        }
        try await Task.sleep(for: .milliseconds(250))
    }
    throw DaemonError("timed out after \(timeout) waiting for: \(what)\(lastError)" + (cluster.map { "\n" + $0.logTails() } ?? ""))
}

/// Checks each ledger by asking every bookie of every write set for every entry directly (not trusting
/// metadata to mean the copies exist): each answers it intact. Returns the problems found.
func replicationProblems(_ pool: BookiePool, _ ids: [LedgerID]) async throws -> [String] {
    var problems: [String] = []
    for id in ids {
        guard let (metadata, _) = try await pool.cluster.ledger(id), let quorums = Quorums(metadata) else {
            problems.append("ledger \(id) has no metadata")
            continue
        }
        guard metadata.state == .closed, metadata.lastEntry.rawValue >= 0 else { continue }
        for e in 0...metadata.lastEntry.rawValue {
            let fragment = metadata.fragment(for: EntryID(e))
            for position in quorums.writeSet(of: EntryID(e)) {
                let bookie = fragment.bookies[position]
                do {
                    let answer = try await pool.send(.read(ledger: id, entry: EntryID(e), fenceWith: nil), to: bookie,
                                                     lane: id.rawValue, timeout: .seconds(10))
                    guard case .entry(let bytes) = answer, let header = try? EntryCodec.validate(bytes),
                          header.ledger == id, header.entry == EntryID(e) else {
                        problems.append("ledger \(id) entry \(e) on \(bookie): \(answer)")
                        continue
                    }
                } catch {
                    problems.append("ledger \(id) entry \(e) on \(bookie): \(error)")
                }
                if problems.count > 20 { return problems }
            }
        }
    }
    return problems
}

/// Ledgers whose metadata still names `bookie`.
func ledgersNaming(_ bookie: BookieID, _ cluster: Cluster) async throws -> Int {
    try await cluster.ledgersNaming(bookie).count
}

/// Ledgers with marks.
func markedLedgers(_ cluster: Cluster) async throws -> [LedgerID] {
    var ids: [LedgerID] = []
    try await cluster.forEachMarked { id, _, _ in ids.append(id) }
    return ids
}
