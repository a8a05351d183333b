import DLogMetadata
import DLogWire
import Synchronization

/// Reads a ledger without disturbing its writer (no fencing): never past the last add confirmed, every entry
/// checked (CRC32C over header and payload, and the header naming this ledger and entry) before it is handed out.
/// A replica that fails or returns a damaged entry is skipped for the next one of the write set.
public final class LedgerReader: Sendable {
    public let id: LedgerID
    public let quorums: Quorums
    let pool: BookiePool
    private let state: Mutex<(metadata: LedgerMetadata, lac: EntryID)>

    private init(id: LedgerID, quorums: Quorums, metadata: LedgerMetadata, lac: EntryID, pool: BookiePool) {
        self.id = id
        self.quorums = quorums
        self.pool = pool
        state = Mutex((metadata, lac))
    }

    /// Opens `id` for reading. A closed ledger reads up to its last entry; an open one up to the LAC its
    /// bookies report (refreshed by `refreshLastAddConfirmed`).
    public static func open(_ id: LedgerID, password: String, pool: BookiePool) async throws -> LedgerReader {
        guard let (metadata, _) = try await pool.cluster.ledger(id) else { throw LedgerError.noSuchLedger(id) }
        guard metadata.passwordHash == LedgerPassword(password).check else { throw LedgerError.wrongPassword(id) }
        guard let quorums = Quorums(metadata) else {
            throw LedgerError.unreadable(id, .none, ["its metadata has impossible quorums"])
        }
        let reader = LedgerReader(id: id, quorums: quorums, metadata: metadata,
                                  lac: metadata.state == .closed ? metadata.lastEntry : .none, pool: pool)
        if metadata.state != .closed { _ = try await reader.refreshLastAddConfirmed() }
        return reader
    }

    public var lastAddConfirmed: EntryID { state.withLock { $0.lac } }
    public var metadata: LedgerMetadata { state.withLock { $0.metadata } }

    /// Asks the bookies of the last fragment for their LAC and keeps the highest: any LAC a bookie saw was
    /// confirmed by the writer, so reading up to it is safe.
    @discardableResult
    public func refreshLastAddConfirmed() async throws -> EntryID {
        let (metadata, current) = state.withLock { ($0.metadata, $0.lac) }
        if metadata.state == .closed { return current }
        var best = current
        var reasons: [String] = []
        for bookie in metadata.fragments.last!.bookies {
            do {
                let client = try await pool.client(for: bookie)
                if case .lac(let lac, _) = try await client.send(.readLAC(ledger: id, longPoll: nil)) { best = max(best, lac) }
            } catch {
                reasons.append("\(bookie): \(error)")
            }
        }
        if reasons.count == metadata.fragments.last!.bookies.count {
            throw LedgerError.unreadable(id, .none, reasons)
        }
        state.withLock { $0.lac = max($0.lac, best) }
        return best
    }

    /// Waits (at most `timeout`) until a bookie of the last fragment knows a LAC past `previous`; returns the
    /// LAC, unchanged when none came in time (then the metadata is read again, to notice a close). A closed
    /// ledger answers at once with its last entry.
    @discardableResult
    public func waitForLastAddConfirmed(after previous: EntryID, timeout: Duration) async throws -> EntryID {
        if metadata.state == .closed { return lastAddConfirmed }
        let bookies = state.withLock { $0.metadata.fragments.last!.bookies }
        let millis = UInt32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let poll = BookieRequest.readLAC(ledger: id, longPoll: .init(previous: previous, timeoutMilliseconds: millis))
        let (answers, sink) = AsyncStream.makeStream(of: EntryID?.self)
        for bookie in bookies {
            Task {
                let answer = try? await pool.send(poll, to: bookie, timeout: timeout + .seconds(2))
                if case .lac(let lac, _)? = answer { sink.yield(lac) } else { sink.yield(nil) }
            }
        }
        var received = 0
        var best = state.withLock { $0.lac }
        for await lac in answers {
            received += 1
            if let lac { best = max(best, lac) }
            // The first bookie to see progress is enough: any LAC a bookie knows was confirmed.
            if best > previous || received == bookies.count {
                sink.finish()
                break
            }
        }
        state.withLock { $0.lac = max($0.lac, best) }
        // No progress in a whole poll: only then ask metadata whether the ledger was closed (or its ensemble
        // changed), so metadata stays off the per-entry path.
        if best <= previous, let closedAt = try await refreshIfClosed() { return closedAt }
        return state.withLock { $0.lac }
    }

    /// Re-reads the metadata; when the ledger was closed meanwhile, adopts its last entry and returns it.
    private func refreshIfClosed() async throws -> EntryID? {
        if metadata.state == .closed { return lastAddConfirmed }
        guard let (fresh, _) = try await pool.cluster.ledger(id) else { throw LedgerError.noSuchLedger(id) }
        guard fresh.state == .closed else {
            state.withLock { $0.metadata = fresh }
            return nil
        }
        state.withLock { s in
            s.metadata = fresh
            s.lac = fresh.lastEntry
        }
        return fresh.lastEntry
    }

    /// Every entry from `first` on, in order, each once, as soon as it is confirmed; ends after the last entry
    /// once the ledger is closed. Never yields past the LAC.
    public func tail(from first: EntryID = EntryID(0), pollTimeout: Duration = .seconds(5)) -> AsyncThrowingStream<(EntryID, [UInt8]), any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                var next = first
                do {
                    while !Task.isCancelled {
                        let lac = lastAddConfirmed
                        if next <= lac {
                            continuation.yield((next, try await read(next)))
                            next = EntryID(next.rawValue + 1)
                            continue
                        }
                        if metadata.state == .closed { break }
                        try await waitForLastAddConfirmed(after: lac, timeout: pollTimeout)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The payload of `entry`, which must not be past the last add confirmed.
    public func read(_ entry: EntryID) async throws -> [UInt8] {
        let (metadata, lac) = state.withLock { ($0.metadata, $0.lac) }
        guard entry.rawValue >= 0, entry <= lac else {
            throw LedgerError.beyondLastAddConfirmed(id, entry: entry, lac: lac)
        }
        let bookies = metadata.fragment(for: entry).bookies
        var reasons: [String] = []
        for position in quorums.writeSet(of: entry) {
            let bookie = bookies[position]
            do {
                let client = try await pool.client(for: bookie)
                switch try await client.send(.read(ledger: id, entry: entry, fenceWith: nil)) {
                case .entry(let bytes):
                    if let payload = checked(bytes, entry: entry, from: bookie, reasons: &reasons) { return payload }
                case .failed(let status, let message):
                    reasons.append("\(bookie): \(status): \(message)")
                case let other:
                    reasons.append("\(bookie): unexpected answer \(other)")
                }
            } catch {
                reasons.append("\(bookie): \(error)")
            }
        }
        throw LedgerError.unreadable(id, entry, reasons)
    }

    /// The payload if the stored entry is intact and is the one asked for; else nil, with the reason noted.
    private func checked(_ bytes: [UInt8], entry: EntryID, from bookie: BookieID, reasons: inout [String]) -> [UInt8]? {
        do {
            let header = try EntryCodec.validate(bytes)
            guard header.ledger == id, header.entry == entry else {
                reasons.append("\(bookie): returned \(header.ledger)/\(header.entry) instead")
                return nil
            }
            return Array(bytes[EntryHeader.byteCount...])
        } catch {
            reasons.append("\(bookie): \(error) (replica skipped)")
            return nil
        }
    }
}
