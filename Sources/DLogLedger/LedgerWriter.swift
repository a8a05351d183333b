import DLogMetadata
import DLogWire
import Foundation
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
    public let id: LedgerID
    public let quorums: Quorums
    let pool: BookiePool
    let password: LedgerPassword

    private struct Unconfirmed {
        var bytes: [UInt8]
        var length: UInt64
        var waiter: CheckedContinuation<EntryID, any Error>
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
        var drained: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>

    private init(id: LedgerID, quorums: Quorums, metadata: LedgerMetadata, version: Version, ensemble: [BookieClient],
                 pool: BookiePool, password: LedgerPassword) {
        self.id = id
        self.quorums = quorums
        self.pool = pool
        self.password = password
        state = Mutex(State(metadata: metadata, version: version, ensemble: ensemble, pending: PendingAdds(quorums: quorums)))
    }

    /// Creates a ledger: a new id, an ensemble placed over the writable bookies, metadata created OPEN.
    public static func create<R: RandomNumberGenerator>(
        quorums: Quorums, password: String, pool: BookiePool, allocator: LedgerIDAllocator,
        placement: EnsemblePlacement = EnsemblePlacement(policy: .random), custom: [String: [UInt8]] = [:],
        using rng: inout R
    ) async throws -> LedgerWriter {
        let registered = try await pool.registered()
        let choice: EnsemblePlacement.Choice
        do {
            choice = try placement.ensemble(for: quorums, from: registered, using: &rng)
        } catch {
            throw LedgerError.placement(error.message)
        }
        var clients: [BookieClient] = []
        for bookie in choice.bookies { clients.append(try await pool.client(for: bookie)) }
        let secret = LedgerPassword(password)
        let metadata = LedgerMetadata(
            ensembleSize: quorums.ensembleSize, writeQuorum: quorums.writeQuorum, ackQuorum: quorums.ackQuorum,
            passwordHash: secret.check, fragments: [.init(firstEntry: EntryID(0), bookies: choice.bookies)],
            creationTime: Int64(Date().timeIntervalSince1970 * 1000), custom: custom)
        let id = try await allocator.next()
        let version = try await pool.cluster.createLedger(id, metadata)
        return LedgerWriter(id: id, quorums: quorums, metadata: metadata, version: version, ensemble: clients,
                            pool: pool, password: secret)
    }

    public var lastAddConfirmed: EntryID { state.withLock { $0.pending.lastAddConfirmed } }
    public var ensemble: [BookieID] { state.withLock { $0.metadata.fragments.last!.bookies } }

    /// Adds `payload` as the next entry; returns its id once it is confirmed.
    public func append(_ payload: [UInt8]) async throws -> EntryID {
        try await withCheckedThrowingContinuation { waiter in
            let sends = state.withLock { s -> [(BookieClient, [UInt8], EntryID, Int)]? in
                if let failure = s.failure {
                    waiter.resume(throwing: failure)
                    return nil
                }
                let (entry, positions) = s.pending.append()
                s.lengthSent += UInt64(payload.count)
                let header = EntryHeader(ledger: id, entry: entry, lastAddConfirmed: s.pending.lastAddConfirmed,
                                         ledgerLength: s.lengthSent)
                let bytes = EntryCodec.encode(header, payload: payload)
                s.unconfirmed[entry] = Unconfirmed(bytes: bytes, length: s.lengthSent, waiter: waiter)
                return positions.map { (s.ensemble[$0], bytes, entry, $0) }
            }
            for (client, bytes, entry, position) in sends ?? [] { send(bytes, entry: entry, position: position, to: client) }
        }
    }

    private func send(_ bytes: [UInt8], entry: EntryID, position: Int, to client: BookieClient) {
        client.sendFuture(.add(masterKey: password.masterKey, entry: bytes, recovery: false)).whenComplete { result in
            self.answered(entry, position: position, result: result)
        }
    }

    private func answered(_ entry: EntryID, position: Int, result: Result<BookieResponse, any Error>) {
        switch result {
        case .success(.added):
            let (confirmed, drained) = state.withLock { s -> ([(EntryID, CheckedContinuation<EntryID, any Error>)], [CheckedContinuation<Void, Never>]) in
                let ids = s.pending.acknowledge(entry, from: position)
                let done = ids.compactMap { id -> (EntryID, CheckedContinuation<EntryID, any Error>)? in
                    guard let u = s.unconfirmed.removeValue(forKey: id) else { return nil }
                    s.lengthConfirmed = u.length
                    return (id, u.waiter)
                }
                guard s.pending.isEmpty else { return (done, []) }
                defer { s.drained.removeAll() }
                return (done, s.drained)
            }
            for (id, waiter) in confirmed { waiter.resume(returning: id) }
            for waiter in drained { waiter.resume() }
        case .success(.failed(.fenced, _)):
            fail(.fenced(id))
        case .success(.failed(let status, let message)):
            fail(.bookieFailed(id, bookie(at: position), "\(status): \(message)"))
        case .success(let other):
            fail(.bookieFailed(id, bookie(at: position), "unexpected answer \(other) to an add"))
        case .failure(let error):
            fail(.bookieFailed(id, bookie(at: position), "\(error)"))
        }
    }

    private func bookie(at position: Int) -> BookieID {
        state.withLock { $0.metadata.fragments.last!.bookies[position] }
    }

    /// Ends the writer: every pending and later add fails with `error`.
    private func fail(_ error: LedgerError) {
        let (waiters, drained) = state.withLock { s -> ([CheckedContinuation<EntryID, any Error>], [CheckedContinuation<Void, Never>]) in
            if s.failure == nil { s.failure = error }
            let ids = s.pending.removeAll()
            let waiters = ids.compactMap { s.unconfirmed.removeValue(forKey: $0)?.waiter }
            defer { s.drained.removeAll() }
            return (waiters, s.drained)
        }
        for waiter in waiters { waiter.resume(throwing: error) }
        for waiter in drained { waiter.resume() }
    }

    /// Waits for every add in flight, then closes the ledger in metadata (compare-and-set to CLOSED with its
    /// last entry and length). Later adds fail.
    @discardableResult
    public func close() async throws -> LedgerMetadata {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.pending.isEmpty { return true }
                s.drained.append(waiter)
                return false
            }
            if now { waiter.resume() }
        }
        let (closing, version) = state.withLock { s -> (LedgerMetadata, Version) in
            if s.failure == nil { s.failure = .writerClosed(id, "the ledger was closed") }
            var closed = s.metadata
            closed.state = .closed
            closed.lastEntry = s.pending.lastAddConfirmed
            closed.length = s.lengthConfirmed
            return (closed, s.version)
        }
        let newVersion = try await pool.cluster.updateLedger(id, closing, ifVersion: version)
        state.withLock { s in
            s.metadata = closing
            s.version = newVersion
        }
        return closing
    }
}
