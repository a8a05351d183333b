import DLogMetadata
import DLogWire

/// Which bookies store a new ledger, or replace a failed one: chosen from the registered writable bookies,
/// at random or spread over racks (zones) by their labels. A pure function of its inputs and a random source.
public struct EnsemblePlacement: Sendable {
    public enum Policy: String, Sendable {
        case random
        /// Consecutive ensemble positions (which form the write sets) on different racks where possible.
        case rackAware = "rack-aware"
    }

    public struct Failure: Error, Hashable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    public struct Choice: Sendable, Equatable {
        public var bookies: [BookieID]
        /// Set when racks could not be spread as asked: the ledger is written anyway, with less protection.
        public var warning: String?
    }

    public let policy: Policy

    public init(policy: Policy) { self.policy = policy }

    /// Chooses `quorums.ensembleSize` distinct writable bookies, none of `excluding`.
    public func ensemble<R: RandomNumberGenerator>(for quorums: Quorums, from registered: [BookieRegistration],
                                                  excluding: Set<BookieID> = [], using rng: inout R) throws(Failure) -> Choice {
        let candidates = Self.writable(registered, excluding: excluding)
        guard candidates.count >= quorums.ensembleSize else {
            throw Self.shortage(needed: quorums.ensembleSize, candidates: candidates, registered: registered, excluding: excluding)
        }
        switch policy {
        case .random:
            return Choice(bookies: Array(candidates.shuffled(using: &rng).prefix(quorums.ensembleSize)).map(\.id), warning: nil)
        case .rackAware:
            return spread(quorums, candidates, using: &rng)
        }
    }

    /// Chooses a replacement for the bookie at `position` of `ensemble`: writable, not in the ensemble, none of
    /// `excluding`; rack-aware, on a rack the other members of its write sets do not use, where possible. Among the
    /// bookies the policy finds equally good, `preferring` is chosen when it is one (a replication worker's own
    /// bookie, which it writes to without the network); the others at random.
    public func replacement<R: RandomNumberGenerator>(for position: Int, in ensemble: [BookieID], quorums: Quorums,
                                                     from registered: [BookieRegistration], excluding: Set<BookieID>,
                                                     preferring: BookieID? = nil,
                                                     using rng: inout R) throws(Failure) -> Choice {
        var candidates = Self.writable(registered, excluding: excluding.union(ensemble)).shuffled(using: &rng)
        if let preferred = candidates.firstIndex(where: { $0.id == preferring }) {
            candidates.insert(candidates.remove(at: preferred), at: 0)
        }
        guard let fallback = candidates.first else {
            throw Self.shortage(needed: 1, candidates: [], registered: registered, excluding: excluding.union(ensemble))
        }
        guard policy == .rackAware else { return Choice(bookies: [fallback.id], warning: nil) }
        let racks = Dictionary(registered.map { ($0.id, $0.rack) }, uniquingKeysWith: { a, _ in a })
        // Positions sharing a write set with `position`: up to Qw − 1 on either side.
        let neighbours = (1..<quorums.writeQuorum).flatMap { [position - $0, position + $0] }
            .map { (($0 % quorums.ensembleSize) + quorums.ensembleSize) % quorums.ensembleSize }
            .filter { $0 != position }
        let taken = Set(neighbours.compactMap { racks[ensemble[$0]] })
        if let spread = candidates.first(where: { !taken.contains($0.rack) }) {
            return Choice(bookies: [spread.id], warning: nil)
        }
        return Choice(bookies: [fallback.id],
                      warning: "no writable bookie outside racks \(taken.sorted()); \(fallback.id) shares a rack with its write-set neighbours")
    }

    private func spread<R: RandomNumberGenerator>(_ quorums: Quorums, _ candidates: [BookieRegistration],
                                                 using rng: inout R) -> Choice {
        // Deal from racks in turn (largest first, ties at random), so neighbours differ while racks last.
        var byRack = Dictionary(grouping: candidates.shuffled(using: &rng), by: \.rack).map { $0.value }
        byRack.shuffle(using: &rng)
        byRack.sort { $0.count > $1.count }
        var chosen: [BookieID] = []
        var round = 0
        while chosen.count < quorums.ensembleSize {
            for rack in byRack where round < rack.count && chosen.count < quorums.ensembleSize {
                chosen.append(rack[round].id)
            }
            round += 1
        }
        // Judged per write set: each should span min(Qw, racks available) racks. Uneven racks can defeat the
        // dealing even when there are enough of them (3 bookies of 5 on one rack always put two side by side).
        let rackOf = Dictionary(candidates.map { ($0.id, $0.rack) }, uniquingKeysWith: { a, _ in a })
        let racksAvailable = Set(candidates.map(\.rack)).count
        let wanted = min(quorums.writeQuorum, racksAvailable)
        let crowded = quorums.allWriteSets.filter { set in Set(set.map { rackOf[chosen[$0]]! }).count < wanted }
        var warning: String?
        if racksAvailable < quorums.writeQuorum {
            warning = "only \(racksAvailable) rack(s) among the writable bookies for a write quorum of \(quorums.writeQuorum): some copies share a rack"
        } else if let first = crowded.first {
            warning = "\(crowded.count) write set(s) (first: positions \(first)) have copies on one rack: the writable bookies' racks are too uneven (\(byRack.map(\.count)) bookies per rack)"
        }
        return Choice(bookies: chosen, warning: warning)
    }

    private static func writable(_ registered: [BookieRegistration], excluding: Set<BookieID>) -> [BookieRegistration] {
        registered.filter { !$0.readOnly && !excluding.contains($0.id) }.sorted { $0.id < $1.id }
    }

    private static func shortage(needed: Int, candidates: [BookieRegistration], registered: [BookieRegistration],
                                 excluding: Set<BookieID>) -> Failure {
        let readOnly = registered.filter(\.readOnly).map(\.id.rawValue)
        let excluded = registered.filter { excluding.contains($0.id) && !$0.readOnly }.map(\.id.rawValue)
        var why = "need \(needed) writable bookie(s), \(candidates.count) available (\(registered.count) registered"
        if !readOnly.isEmpty { why += "; read-only: \(readOnly.joined(separator: ", "))" }
        if !excluded.isEmpty { why += "; in the ensemble or failed: \(excluded.joined(separator: ", "))" }
        return Failure(message: why + ")")
    }
}
