import DLogMetadata
import DLogWire

/// Opening a ledger with recovery: makes sure its writer can add nothing more, finds every entry that may have
/// been confirmed, makes each one fully replicated, and closes the ledger at the last of them.
///
/// 1. Metadata OPEN → IN_RECOVERY by compare-and-set (a writer's later ensemble change then fails).
/// 2. Fence the last fragment's bookies; go on as soon as `FenceProgress` says no ack quorum is left unfenced
///    (a hanging bookie is not waited for), taking the highest LAC seen.
/// 3. Read forward from the entry after that LAC; each entry is decided by `EntryRecovery` and re-written to
///    its whole write set with the recovery flag, until one is missing.
/// 4. IN_RECOVERY → CLOSED by compare-and-set with the last entry and length. Concurrent recoverers converge:
///    one closes it; another that finds it closed accepts the same result and refuses a different one.
public struct LedgerRecovery: Sendable {
    public let pool: BookiePool
    /// How long one bookie may take to answer one request.
    public var requestTimeout: Duration = .seconds(5)

    public init(pool: BookiePool) { self.pool = pool }

    public func recover(_ id: LedgerID, password: String) async throws -> LedgerMetadata {
        let secret = LedgerPassword(password)
        return try await recover(id, key: secret.masterKey, check: secret.check)
    }

    /// Recovers with the master key itself, as a replication worker does (it never knows the password; it
    /// reads the key from a bookie with LEDGER_KEY).
    public func recover(_ id: LedgerID, masterKey: MasterKey) async throws -> LedgerMetadata {
        try await recover(id, key: masterKey, check: nil)
    }

    /// `check`: the password's check bytes, compared with the metadata's; nil when the caller holds the key.
    private func recover(_ id: LedgerID, key: MasterKey, check: [UInt8]?) async throws -> LedgerMetadata {
        var (metadata, version) = try await readMetadata(id, check)
        if metadata.state == .closed { return metadata }
        guard let quorums = Quorums(metadata) else { throw LedgerError.badMetadata(id, "impossible quorums \(metadata.ensembleSize)/\(metadata.writeQuorum)/\(metadata.ackQuorum)") }
        if metadata.state == .open {
            var recovering = metadata
            recovering.state = .inRecovery
            do {
                version = try await pool.cluster.updateLedger(id, recovering, ifVersion: version)
                metadata = recovering
            } catch MetadataError.versionConflict {
                // The writer changed its ensemble, or another recoverer got here first: start from what is there.
                return try await recover(id, key: key, check: check)
            }
        }
        let fencedLAC = try await fence(id, metadata: metadata, quorums: quorums, key: key)
        // Every entry before the last fragment was confirmed when that fragment was written (it starts at the
        // first unconfirmed entry), so reading forward starts there at the latest: older fragments name
        // replaced bookies, and re-writing to them could fail or touch a dead bookie.
        let lac = max(fencedLAC, EntryID(metadata.fragments.last!.firstEntry.rawValue - 1))
        let (last, length) = try await readForward(id, metadata: metadata, quorums: quorums, after: lac, key: key)
        var closed = metadata
        closed.state = .closed
        closed.lastEntry = last
        closed.length = length
        do {
            try await pool.cluster.updateLedger(id, closed, ifVersion: version)
            return closed
        } catch MetadataError.versionConflict {
            let (now, _) = try await readMetadata(id, check)
            guard now.state == .closed else {
                throw LedgerError.conflict(id, "another client changed the ledger during recovery (state \(now.state)); recover it again")
            }
            guard now.lastEntry == last, now.length == length else {
                throw LedgerError.conflict(id, "another recoverer closed it at \(now.lastEntry) (\(now.length) bytes), this recovery found \(last) (\(length) bytes)")
            }
            return now
        }
    }

    private func readMetadata(_ id: LedgerID, _ check: [UInt8]?) async throws -> (LedgerMetadata, Version) {
        guard let (metadata, version) = try await pool.cluster.ledger(id) else { throw LedgerError.noSuchLedger(id) }
        if let check, metadata.passwordHash != check { throw LedgerError.wrongPassword(id) }
        return (metadata, version)
    }

    /// Fences every bookie of the last fragment, in parallel, and returns as soon as enough are fenced.
    private func fence(_ id: LedgerID, metadata: LedgerMetadata, quorums: Quorums, key: MasterKey) async throws -> EntryID {
        let bookies = metadata.fragments.last!.bookies
        let (answers, sink) = AsyncStream.makeStream(of: (Int, FenceProgress.Answer).self)
        // Unstructured on purpose: a bookie that hangs must not hold recovery until its timeout.
        for (position, bookie) in bookies.enumerated() {
            Task {
                sink.yield((position, await fenceOne(id, bookie: bookie, key: key)))
            }
        }
        var progress = FenceProgress(quorums: quorums)
        var received = 0
        for await (position, answer) in answers {
            progress.record(answer, from: position)
            received += 1
            switch progress.decision {
            case .fenced(let lac):
                sink.finish()
                return lac
            case .impossible(let why):
                sink.finish()
                throw LedgerError.recoveryFailed(id, "fencing failed: \(why)")
            case .waiting:
                if received == bookies.count { sink.finish() }
            }
        }
        throw LedgerError.recoveryFailed(id, "fencing ended without a decision")
    }

    private func fenceOne(_ id: LedgerID, bookie: BookieID, key: MasterKey) async -> FenceProgress.Answer {
        do {
            switch try await pool.send(.read(ledger: id, entry: .none, fenceWith: key), to: bookie, lane: id.rawValue, timeout: requestTimeout) {
            case .entry(let bytes):
                guard let header = try? EntryCodec.validate(bytes), header.ledger == id else {
                    pool.logger.warning("damaged replica skipped", metadata: [
                        "ledger": "\(id)", "entry": "last", "bookie": "\(bookie)", "reason": "fence read returned a damaged entry"])
                    return .failed("its last entry is damaged")
                }
                return .fenced(lastAddConfirmed: max(header.lastAddConfirmed, EntryID.none))
            case .failed(.noEntry, _), .failed(.noLedger, _):
                return .fenced(lastAddConfirmed: .none)
            case .failed(let status, let message):
                return .failed("\(status): \(message)")
            case let other:
                return .failed("unexpected answer \(other)")
            }
        } catch {
            return .failed("\(error)")
        }
    }

    /// Recovers entries after `lac` until one is missing; returns the last entry and the ledger's length.
    private func readForward(_ id: LedgerID, metadata: LedgerMetadata, quorums: Quorums, after lac: EntryID,
                             key: MasterKey) async throws -> (EntryID, UInt64) {
        var last = lac
        var length: UInt64 = 0
        if lac.rawValue >= 0 {
            guard case .recovered(let bytes) = try await decide(id, lac, metadata: metadata, quorums: quorums) else {
                throw LedgerError.recoveryFailed(id, "the last add confirmed, \(lac), cannot be read from any replica")
            }
            length = try EntryCodec.validate(bytes).ledgerLength
        }
        while true {
            let entry = EntryID(last.rawValue + 1)
            switch try await decide(id, entry, metadata: metadata, quorums: quorums) {
            case .recovered(let bytes):
                try await rewrite(id, entry, bytes, metadata: metadata, quorums: quorums, key: key)
                length = try EntryCodec.validate(bytes).ledgerLength
                last = entry
            case .missing:
                return (last, length)
            case .undecidable(let why):
                throw LedgerError.recoveryFailed(id, why)
            case .waiting:
                preconditionFailure("decide returns only when every replica answered or the entry is settled")
            }
        }
    }

    /// Asks the replicas of `entry`, in parallel, until `EntryRecovery` decides.
    private func decide(_ id: LedgerID, _ entry: EntryID, metadata: LedgerMetadata,
                        quorums: Quorums) async throws -> EntryRecovery.Decision {
        var recovery = EntryRecovery(quorums: quorums, entry: entry)
        let bookies = metadata.fragment(for: entry).bookies
        let (answers, sink) = AsyncStream.makeStream(of: (Int, EntryRecovery.Answer).self)
        for position in recovery.positions {
            let bookie = bookies[position]
            Task { sink.yield((position, await readOne(id, entry, from: bookie))) }
        }
        var received = 0
        for await (position, answer) in answers {
            recovery.record(answer, from: position)
            received += 1
            if recovery.decision != .waiting || received == recovery.positions.count {
                sink.finish()
                return recovery.decision
            }
        }
        return recovery.decision
    }

    private func readOne(_ id: LedgerID, _ entry: EntryID, from bookie: BookieID) async -> EntryRecovery.Answer {
        do {
            switch try await pool.send(.read(ledger: id, entry: entry, fenceWith: nil), to: bookie, lane: id.rawValue, timeout: requestTimeout) {
            case .entry(let bytes):
                guard let header = try? EntryCodec.validate(bytes), header.ledger == id, header.entry == entry else {
                    pool.logger.warning("damaged replica skipped", metadata: [
                        "ledger": "\(id)", "entry": "\(entry)", "bookie": "\(bookie)", "reason": "recovery read returned a damaged or wrong entry"])
                    return .failed("\(bookie) returned a damaged or wrong entry")
                }
                return .found(bytes)
            case .failed(.noEntry, _), .failed(.noLedger, _):
                return .noEntry
            case .failed(.corruptEntry, let message):
                pool.logger.warning("damaged replica skipped", metadata: [
                    "ledger": "\(id)", "entry": "\(entry)", "bookie": "\(bookie)", "reason": "\(message)"])
                return .failed("\(bookie): \(BookieStatus.corruptEntry): \(message)")
            case .failed(let status, let message):
                return .failed("\(bookie): \(status): \(message)")
            case let other:
                return .failed("\(bookie): unexpected answer \(other)")
            }
        } catch {
            return .failed("\(bookie): \(error)")
        }
    }

    /// Writes a recovered entry to its whole write set with the recovery flag (accepted by fenced bookies);
    /// done once an ack quorum has it.
    private func rewrite(_ id: LedgerID, _ entry: EntryID, _ bytes: [UInt8], metadata: LedgerMetadata,
                         quorums: Quorums, key: MasterKey) async throws {
        let bookies = metadata.fragment(for: entry).bookies
        let (answers, sink) = AsyncStream.makeStream(of: Result<Void, LedgerError>.self)
        for position in quorums.writeSet(of: entry) {
            let bookie = bookies[position]
            Task {
                do {
                    switch try await pool.send(.add(masterKey: key, entry: bytes, recovery: true), to: bookie, lane: id.rawValue, timeout: requestTimeout) {
                    case .added: sink.yield(.success(()))
                    case let other: sink.yield(.failure(.bookieFailed(id, bookie, "recovery add answered \(other)")))
                    }
                } catch {
                    sink.yield(.failure(.bookieFailed(id, bookie, "recovery add: \(error)")))
                }
            }
        }
        var acked = 0
        var failures: [String] = []
        for await answer in answers {
            switch answer {
            case .success: acked += 1
            case .failure(let error): failures.append("\(error)")
            }
            if acked >= quorums.ackQuorum {
                sink.finish()
                return
            }
            if failures.count > quorums.writeQuorum - quorums.ackQuorum {
                sink.finish()
                throw LedgerError.recoveryFailed(id, "re-writing \(entry) to an ack quorum failed: " + failures.joined(separator: "; "))
            }
        }
    }
}
