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
