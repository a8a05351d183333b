import DLogMetadata
import DLogWire
import Logging
import Synchronization

/// What a bookie's garbage collection learns between full listings, by watching ledger metadata: the ledgers
/// this bookie holds whose metadata was deleted, and those whose metadata changed (each may now leave this
/// bookie's copies behind). A full listing costs in proportion to every ledger in the cluster, at every pass on
/// every bookie; following the changes costs in proportion to what changes, so an idle cluster's GC does nothing.
final class LedgerChangeFeed: Sendable {
    /// What changed since the last `take()`.
    struct Changes: Equatable {
        var deleted: [LedgerID] = []
        var changed: Set<LedgerID> = []
    }

    private struct State {
        var changes = Changes()
        /// False until a listing starts the feed, and again once its watch ended for good (history compacted
        /// past it, the store shut down) or it recorded more changes than `changedMax` (the watch then stops):
        /// until the next full listing, what it holds is not the whole story.
        var complete = false
        var task: Task<Void, Never>?
        /// Which `follow` the running watch belongs to: a watch it replaced records nothing more.
        var generation = 0
    }

    /// Changed ledgers remembered at most: past this a full listing is the cheaper way to look at them.
    static let changedMax = 1_000

    private let store: any MetadataStore
    /// Whether this bookie holds a ledger: changes to ledgers it does not hold are none of its business.
    private let holds: @Sendable (LedgerID) -> Bool
    private let logger: Logger
    private let state = Mutex(State())

    init(store: any MetadataStore, holds: @escaping @Sendable (LedgerID) -> Bool, logger: Logger) {
        self.store = store
        self.holds = holds
        self.logger = logger
    }

    /// Forgets what it had and follows every change after `revision`, the revision a full listing was read at.
    func follow(after revision: Revision) {
        let previous = state.withLock { state in
            let replaced = state.task
            let generation = state.generation + 1
            state = State(complete: true, generation: generation)
            // Created under the lock: the new watch records nothing until the reset above is in place.
            state.task = Task { [self] in await watch(from: revision.next, generation: generation) }
            return replaced
        }
        previous?.cancel()
    }

    /// The changes since the last call, or nil when they are not known in full (a full listing must look).
    func take() -> Changes? {
        state.withLock { state in
            guard state.complete else { return nil }
            defer { state.changes = Changes() }
            return state.changes
        }
    }

    /// The ledgers deleted from metadata since the last call; the changed ones stay for `take()`.
    func takeDeleted() -> [LedgerID] {
        state.withLock { state in
            defer { state.changes.deleted = [] }
            return state.changes.deleted
        }
    }

    /// Hands back ledgers a pass could not settle (their copies are left behind, but a worker's lock or a mark
    /// keeps them for now): the next pass looks at them again.
    func remember(_ ledgers: some Sequence<LedgerID>) {
        state.withLock { state in
            guard state.complete else { return }
            state.changes.changed.formUnion(ledgers)
            if state.changes.changed.count > Self.changedMax { state.complete = false }
        }
    }

    func stop() {
        state.withLock { state in
            defer { state = State(generation: state.generation + 1) }
            return state.task
        }?.cancel()
    }

    private func watch(from revision: Revision, generation: Int) async {
        do {
            for try await event in store.watch(.prefix(ClusterKeys.ledgers), from: revision) {
                guard let id = ClusterKeys.ledgerID(fromKey: event.key), holds(id) else { continue }
                let following = state.withLock { state -> Bool in
                    guard state.generation == generation else { return false }
                    switch event.kind {
                    case .delete: state.changes.deleted.append(id)
                    case .put:
                        state.changes.changed.insert(id)
                        if state.changes.changed.count > Self.changedMax { state.complete = false }
                    }
                    return state.complete
                }
                // Past the bound the next pass lists every ledger, and that listing starts a new watch: following
                // this one further (100,000 segments closing at a proxy's drain) would only cost both ends CPU.
                guard following else { return }
            }
        } catch {
            guard !Task.isCancelled else { return }
            logger.warning("GC stopped following ledger metadata; its next pass lists every ledger",
                           metadata: ["error": "\(error)"])
        }
        state.withLock { state in
            if state.generation == generation { state.complete = false }
        }
    }
}
