import DLogWire

/// The decisions of ledger recovery, as values fed with the bookies' answers (the I/O layer sends, collects
/// and asks what to do next). Both rest on one count, `Quorums.coverage` = Qw − Qa + 1: once that many bookies
/// of a write set answered, the others are too few to form an ack quorum.

/// Fencing the last ensemble. Recovery may proceed as soon as every write set has `coverage` fenced bookies:
/// from then on the old writer cannot gather an ack quorum anywhere, whatever the silent bookies do. It never
/// waits for every bookie, so one hanging bookie cannot stall it.
public struct FenceProgress: Sendable {
    public enum Answer: Sendable, Equatable {
        /// The bookie persisted the fence; `lastAddConfirmed` is the highest LAC it has seen (from its last
        /// entry's header), `.none` when it holds no entry of the ledger.
        case fenced(lastAddConfirmed: EntryID)
        /// The bookie could not be fenced (unreachable, error).
        case failed(String)
    }

    public enum Decision: Sendable, Equatable {
        /// Not yet enough answers.
        case waiting
        /// Enough bookies are fenced: read forward from the entry after `lastAddConfirmed`.
        case fenced(lastAddConfirmed: EntryID)
        /// Too many bookies of one write set failed for it ever to be covered.
        case impossible(String)
    }

    public let quorums: Quorums
    private var answers: [Int: Answer] = [:]

    public init(quorums: Quorums) { self.quorums = quorums }

    public mutating func record(_ answer: Answer, from position: Int) {
        precondition((0..<quorums.ensembleSize).contains(position), "position \(position) is outside the ensemble")
        answers[position] = answer
    }

    public var decision: Decision {
        var lac = EntryID.none
        for answer in answers.values {
            if case .fenced(let seen) = answer { lac = max(lac, seen) }
        }
        for set in quorums.allWriteSets {
            let fenced = set.filter { if case .fenced = answers[$0] { return true } else { return false } }.count
            let failed = set.filter { if case .failed = answers[$0] { return true } else { return false } }
            if quorums.writeQuorum - failed.count < quorums.coverage {
                let reasons = failed.compactMap { position -> String? in
                    if case .failed(let why) = answers[position] { return "position \(position): \(why)" }
                    return nil
                }
                return .impossible("\(failed.count) of the bookies at positions \(set) could not be fenced (\(reasons.joined(separator: "; "))); "
                                   + "\(quorums.coverage) of them are needed")
            }
            if fenced < quorums.coverage { return .waiting }
        }
        return .fenced(lastAddConfirmed: lac)
    }
}

/// Recovering one entry past the fenced LAC, from the answers of its write set. Found on any replica means it
/// may have been acknowledged: it is recovered (and re-written to the whole write set). `coverage` replicas
/// saying they do not have it prove fewer than Qa ever had it, so it was never acknowledged: the ledger ends
/// before it.
public struct EntryRecovery: Sendable {
    public enum Answer: Sendable, Equatable {
        /// The bookie returned the entry and its checksum held.
        case found([UInt8])
        case noEntry
        /// Unreachable, an error, or an entry that failed its checksum (a corrupt replica is not evidence).
        case failed(String)
    }

    public enum Decision: Sendable, Equatable {
        case waiting
        case recovered([UInt8])
        /// The ledger's last entry is the one before.
        case missing
        /// Every replica answered and none settles it: recovery must stop rather than guess.
        case undecidable(String)
    }

    public let quorums: Quorums
    public let entry: EntryID
    private var answers: [Int: Answer] = [:]

    public init(quorums: Quorums, entry: EntryID) {
        self.quorums = quorums
        self.entry = entry
    }

    /// The positions to ask, in order.
    public var positions: [Int] { quorums.writeSet(of: entry) }

    public mutating func record(_ answer: Answer, from position: Int) {
        precondition(positions.contains(position), "position \(position) does not store \(entry)")
        answers[position] = answer
    }

    public var decision: Decision {
        var missing = 0
        var failures: [String] = []
        for position in positions {
            switch answers[position] {
            case .found(let bytes)?: return .recovered(bytes)
            case .noEntry?: missing += 1
            case .failed(let why)?: failures.append("position \(position): \(why)")
            case nil: break
            }
        }
        if missing >= quorums.coverage { return .missing }
        if answers.count == positions.count {
            return .undecidable("\(entry): \(missing) of \(positions.count) replicas lack it (\(quorums.coverage) needed to end the ledger there) and the others failed: \(failures.joined(separator: "; "))")
        }
        return .waiting
    }
}
