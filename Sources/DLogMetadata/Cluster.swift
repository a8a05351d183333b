import DLogWire
import Foundation

/// Where the cluster's records live in the metadata store. The same layout on every backend (on etcd under
/// the URI's prefix):
///
///     /cluster/instance              the cluster's instance id (created once by `dlogctl cluster init`)
///     /bookies/writable/<bookie>     registration of a live, writable bookie (bound to its lease)
///     /bookies/readonly/<bookie>     registration of a live, read-only bookie (bound to its lease)
///     /cookies/<bookie>              the bookie's disk identity, checked at every start
///     /idgen/ledger                  the next unallocated ledger id (advanced by compare-and-set in blocks)
///     /ledgers/<20-digit id>         ledger metadata (`LedgerMetadataCodec`); zero-padded so scans are in id order
///     /monitoring/<role>/<id>        where a role's metrics are served (`MetricsEndpoint`, bound to its lease)
public enum ClusterKeys {
    public static let instance = "/cluster/instance"
    public static let bookies = "/bookies/"
    public static let ledgers = "/ledgers/"
    public static let ledgerIDCounter = "/idgen/ledger"

    public static func registration(_ bookie: BookieID, readOnly: Bool) -> String {
        (readOnly ? "/bookies/readonly/" : "/bookies/writable/") + bookie.rawValue
    }

    public static func cookie(_ bookie: BookieID) -> String { "/cookies/" + bookie.rawValue }

    public static func ledger(_ id: LedgerID) -> String {
        let digits = String(id.rawValue)
        return ledgers + String(repeating: "0", count: 20 - digits.count) + digits
    }

    public static func ledgerID(fromKey key: String) -> LedgerID? {
        guard key.hasPrefix(ledgers) else { return nil }
        return UInt64(key.dropFirst(ledgers.count)).map { LedgerID($0) }
    }
}

/// Errors of the cluster records, each saying what to do about it.
public enum ClusterError: Error, Hashable, CustomStringConvertible {
    case notInitialized
    case alreadyInitialized(instance: String)
    case cookieMismatch(bookie: BookieID, what: String)
    case bookieRunning(BookieID, state: String)
    case bookieHoldsData(BookieID, ledgers: [LedgerID], count: Int)
    case unknownBookie(BookieID)
    case duplicateBookie(BookieID)
    case corruptRecord(key: String, why: String)
    case ledgerExists(LedgerID)
    case noSuchLedger(LedgerID)
    case bookieNotRunning(BookieID)
    case tooFewBookies(BookieID, needed: Int, available: Int, ledger: LedgerID)

    public var description: String {
        switch self {
        case .notInitialized:
            return "the cluster has no instance id yet; run `dlogctl cluster init --metadata URI` once first"
        case .alreadyInitialized(let instance):
            return "the cluster is already initialized (instance \(instance)); nothing was changed"
        case .cookieMismatch(let bookie, let what):
            return "bookie \(bookie) does not match its cookie in metadata: \(what). If the disks were replaced on "
                + "purpose, decommission the bookie (`dlogctl bookie decommission \(bookie)`) and start it afresh"
        case .bookieRunning(let bookie, let state):
            return "bookie \(bookie) is running (registered \(state)); stop it before decommissioning, or retire it "
                + "while it runs with `dlogctl bookie drain \(bookie)`"
        case .bookieNotRunning(let bookie):
            return "bookie \(bookie) is not running; a drain needs it live. Retire a stopped bookie with "
                + "`dlogctl bookie decommission \(bookie)`"
        case .tooFewBookies(let bookie, let needed, let available, let ledger):
            return "draining \(bookie) would leave \(available) writable bookie(s), but ledger \(ledger) needs an "
                + "ensemble of \(needed): add \(needed - available) writable bookie(s) first"
        case .bookieHoldsData(let bookie, let ledgers, let count):
            return "bookie \(bookie) still holds data of \(count) ledger(s) (\(ledgers.map(\.description).joined(separator: ", "))"
                + "\(count > ledgers.count ? ", ..." : "")); their copies must move first: `dlogctl bookie decommission \(bookie)` "
                + "marks them for re-replication and waits until they have moved"
        case .unknownBookie(let bookie):
            return "bookie \(bookie) has no cookie in metadata; nothing to decommission"
        case .duplicateBookie(let bookie):
            return "another bookie is registered as \(bookie) and stays alive; give this one another bookie_id"
        case .corruptRecord(let key, let why):
            return "metadata record \(key) is unreadable: \(why)"
        case .ledgerExists(let id):
            return "ledger \(id) already exists"
        case .noSuchLedger(let id):
            return "ledger \(id) does not exist"
        }
    }
}

/// The cluster's records on top of a `MetadataStore`.
public struct Cluster: Sendable {
    public let store: any MetadataStore

    public init(store: any MetadataStore) { self.store = store }

    /// Creates the cluster instance id; refuses when there is one.
    @discardableResult
    public func initialize() async throws -> String {
        let instance = UUID().uuidString.lowercased()
        do {
            try await store.create(ClusterKeys.instance, value: Array(instance.utf8))
            return instance
        } catch MetadataError.keyExists {
            throw ClusterError.alreadyInitialized(instance: try await instanceID())
        }
    }

    public func instanceID() async throws -> String {
        guard let item = try await store.get(ClusterKeys.instance) else { throw ClusterError.notInitialized }
        return String(decoding: item.value, as: UTF8.self)
    }

    // MARK: Records as JSON

    static func decode<T: Decodable>(_ type: T.Type, _ item: KeyValue) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(item.value))
        } catch {
            throw ClusterError.corruptRecord(key: item.key, why: "\(error)")
        }
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try! encoder.encode(value))
    }
}
