import DistributedLog
import DLogMetadata
import DLogWire
import Logging
import Synchronization

/// Per-log rights on a proxy whose port requires TLS (docs/security.md, "Per-log rights"): every principal's
/// grants (`LogACL`), read from metadata at start and kept current by a watch, checked on every request.
/// `admin` principals may do everything; everyone else needs a grant whose prefix starts the log's name.
public final class ProxyAccess: Sendable {
    let store: any MetadataStore
    let logger: Logger
    private let grants = Mutex<[String: [LogGrant]]>([:])
    private let watcher = Mutex<Task<Void, Never>?>(nil)
    /// Requests refused as PERMISSION_DENIED, for metrics.
    public let denied = Atomic<UInt64>(0)

    public init(store: any MetadataStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Reads every grant, then follows changes until `stop`. Throws when the grants cannot be read at all.
    public func start() async throws {
        let page = try await store.list(prefix: LogACL.keyPrefix)
        var all: [String: [LogGrant]] = [:]
        for item in page.items {
            if let principal = LogACL.principal(ofKey: item.key) { all[principal] = LogACL.decode(item.value) }
        }
        grants.withLock { $0 = all }
        let watch = store.watch(.prefix(LogACL.keyPrefix), from: page.revision.next)
        let task = Task { [weak self, logger] in
            do {
                for try await event in watch {
                    guard let self else { return }
                    guard let principal = LogACL.principal(ofKey: event.key) else { continue }
                    grants.withLock { $0[principal] = event.kind == .put ? LogACL.decode(event.value) : nil }
                }
            } catch is CancellationError {
            } catch {
                // A watch that cannot resume (history compacted past it) leaves the grants as they were; a
                // restart reads them afresh.
                logger.error("per-log rights are no longer followed; restart the proxy", metadata: ["error": "\(error)"])
            }
        }
        watcher.withLock { $0 = task }
    }

    public func stop() {
        watcher.withLock { $0?.cancel() }
    }

    /// The right a request needs on its stream.
    static func right(for request: ProxyRequest) -> LogRight {
        switch request {
        case .getOwner: return .read
        case .write, .writeBulk, .heartbeat, .release: return .write
        case .create, .delete, .truncate: return .admin
        }
    }

    /// Why `principal` may not make `request`; nil when it may.
    public func refusal(_ request: ProxyRequest, by principal: Principal?) -> String? {
        let right = Self.right(for: request)
        guard let principal else {
            return "a connection without a principal may not \(right.rawValue) stream '\(request.stream)'"
        }
        if principal.role == .admin { return nil }
        let held = LogACL.rights(grants.withLock { $0[principal.name] ?? [] }, on: request.stream)
        if held.contains(right) { return nil }
        return "\(principal) may not \(right.rawValue) stream '\(request.stream)' (grant it: dlogctl acl grant)"
    }
}
