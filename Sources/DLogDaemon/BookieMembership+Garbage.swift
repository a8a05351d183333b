import DLogBookie
import DLogMetadata
import DLogWire
import Logging
import Synchronization

/// What GC remembers between passes.
struct GarbageState {
    /// The ledgers held here at the last pass, in id order: those held now and not then arrived since, and are
    /// looked at once (no metadata change may ever come for them).
    var held: [LedgerID] = []
    var lastListing: ContinuousClock.Instant?
}

/// Garbage collection: the bookie deletes the ledgers metadata deleted, and its copies of ledgers healing moved
/// elsewhere. A full listing of every ledger's metadata starts it and then runs rarely (`listingEvery` passes,
/// when the feed of changes broke, or when too much changed at once); between listings each pass looks only at
/// what the feed saw change and at the ledgers that arrived here, so an idle cluster's GC costs nothing.
extension BookieMembership {
    /// Passes between full listings when the feed holds: a listing is the backstop for whatever it cannot see.
    static let listingEvery = 60

    /// A full pass (`dlogctl admin gc`, and the start of following metadata): lists every ledger's metadata.
    /// Local ids are taken before metadata is read: a ledger's metadata is created before any of its entries
    /// reach a bookie, so a ledger held locally and missing from the later listing was deleted, never merely not
    /// yet created. Returns the ledgers it asked the bookie to delete.
    @discardableResult
    func collectGarbage() async throws -> [LedgerID] {
        let local = bookie.storage.ledgerIDs
        try await checkSameCluster()
        guard !local.isEmpty else {
            // Nothing held, nothing to compare: the feed starts from the store's revision now.
            let now = try await cluster.store.range(.key(ClusterKeys.ledgerIDCounter), limit: 1).revision
            startFollowing(after: now, held: [])
            return []
        }
        let me = registration.withLock { $0.id }
        let held = Set(local)
        var known = Set<LedgerID>()
        var leftBehind: [LedgerID] = []
        let revision = try await cluster.forEachLedger { id, metadata, _ in
            known.insert(id)
            if held.contains(id) && Self.isLeftBehind(metadata, by: me) { leftBehind.append(id) }
        }
        listings.add(1, ordering: .relaxed)
        startFollowing(after: revision, held: local)
        let gone = local.filter { !known.contains($0) }
        deleteGone(gone)
        return gone + (try await settle(leftBehind, me: me))
    }

    /// A periodic pass: the ledgers the feed saw deleted or changed, and those that arrived here since the last
    /// pass, each read on its own. A full listing instead when the feed cannot tell (not started yet, its watch
    /// ended, too much changed at once) or every `listingEvery` passes.
    @discardableResult
    func collectChanges() async throws -> [LedgerID] {
        let due = garbage.withLock { state in
            state.lastListing.map { ContinuousClock.now - $0 >= gcInterval * Self.listingEvery } ?? true
        }
        guard !due, let changes = feed.take() else { return try await collectGarbage() }
        let local = bookie.storage.ledgerIDs
        let arrived = garbage.withLock { state in
            defer { state.held = local }
            return Self.arrivals(now: local, before: state.held)
        }
        let deleted = heldOnce(changes.deleted)
        let deletedSet = Set(deleted)
        let toCheck = changes.changed.union(arrived).filter { isHeld($0) && !deletedSet.contains($0) }.sorted()
        guard toCheck.count <= LedgerChangeFeed.changedMax else { return try await collectGarbage() }
        guard !deleted.isEmpty || !toCheck.isEmpty else { return [] }
        let me = registration.withLock { $0.id }
        var gone = deleted
        var leftBehind: [LedgerID] = []
        do {
            try await checkSameCluster()
            for id in toCheck {
                // Local ids were taken before this read: held and absent from metadata means deleted there.
                guard let (metadata, _) = try await cluster.ledger(id) else { gone.append(id); continue }
                if Self.isLeftBehind(metadata, by: me) { leftBehind.append(id) }
            }
        } catch {
            // What this pass took from the feed is looked at again by the next one.
            feed.remember(toCheck + deleted)
            throw error
        }
        deleteGone(gone)
        return gone + (try await settle(leftBehind, me: me))
    }

    /// Between passes, every second: deletes the ledgers the feed saw deleted from metadata, so their space comes
    /// back within a second of the delete rather than at the next pass.
    @discardableResult
    func collectDeleted() async throws -> [LedgerID] {
        let deleted = heldOnce(feed.takeDeleted())
        guard !deleted.isEmpty else { return [] }
        do {
            try await checkSameCluster()
        } catch {
            feed.remember(deleted)
            throw error
        }
        deleteGone(deleted)
        return deleted
    }

    /// The ids in `now` and not in `before`, both in ascending order.
    static func arrivals(now: [LedgerID], before: [LedgerID]) -> [LedgerID] {
        var out: [LedgerID] = []
        var j = before.startIndex
        for id in now {
            while j < before.endIndex && before[j] < id { j += 1 }
            if j == before.endIndex || before[j] != id { out.append(id) }
        }
        return out
    }

    private func isHeld(_ id: LedgerID) -> Bool { bookie.storage.ledgerState(id) != nil }

    /// The ledgers of `ids` still held here, each once (a watch resumed after a lost connection may repeat one).
    private func heldOnce(_ ids: [LedgerID]) -> [LedgerID] {
        var seen = Set<LedgerID>()
        return ids.filter { seen.insert($0).inserted && isHeld($0) }
    }

    private func startFollowing(after revision: Revision, held: [LedgerID]) {
        feed.follow(after: revision)
        garbage.withLock { state in
            state.held = held
            state.lastListing = .now
        }
    }

    /// Deletes the local data of ledgers whose metadata is gone.
    private func deleteGone(_ gone: [LedgerID]) {
        for id in gone {
            bookie.deleteLedger(id) { [self] response in
                if case .failed(let status, let message) = response {
                    logger.warning("GC could not delete a ledger", metadata: ["ledger_id": "\(id.rawValue)",
                                                                              "status": "\(status)", "error": "\(message)"])
                } else {
                    collected.add(1, ordering: .relaxed)
                    logger.info("GC deleted a ledger that metadata no longer has", metadata: ["ledger_id": "\(id.rawValue)"])
                }
            }
        }
    }

    /// Deletes the left-behind copies it may now, a bounded number per pass; the rest, and those a worker's
    /// lock or a mark keeps for now, are handed back to the feed for the next pass.
    private func settle(_ leftBehind: [LedgerID], me: BookieID) async throws -> [LedgerID] {
        guard !leftBehind.isEmpty else { return [] }
        // In no fixed order: ledgers that must wait (locked, marked) do not hold the others back pass after pass.
        let deleted: [LedgerID]
        do {
            deleted = try await deleteLeftBehind(leftBehind.shuffled().prefix(Self.leftBehindPerPass), me: me)
        } catch {
            feed.remember(leftBehind)
            throw error
        }
        let done = Set(deleted)
        feed.remember(leftBehind.filter { !done.contains($0) })
        return deleted
    }

    /// Left-behind ledgers deleted per GC pass at most: each costs a few metadata requests.
    static let leftBehindPerPass = 256

    /// A closed ledger that no fragment names `me` in: healing copied what this bookie held elsewhere and
    /// replaced it (it was declared lost and came back, or it was drained), so its copies here serve nobody.
    static func isLeftBehind(_ metadata: LedgerMetadata, by me: BookieID) -> Bool {
        metadata.state == .closed && !metadata.fragments.contains { $0.bookies.contains(me) }
    }

    /// Deletes this bookie's copies of left-behind ledgers, each under the ledger's re-replication lock (bound to
    /// the registration lease) and only if, read again under it, the ledger is still left behind and unmarked. A
    /// worker copying to this bookie holds that lock until metadata names it: without the lock, a delete could
    /// drop copies the worker was about to name this bookie for. The lock is let go once the delete is durable.
    private func deleteLeftBehind(_ ids: some Collection<LedgerID>, me: BookieID) async throws -> [LedgerID] {
        guard let lease = lease.withLock({ $0 }),
              deletingLeftBehind.withLock({ running in defer { running = true }; return !running }) else { return [] }
        defer { deletingLeftBehind.withLock { $0 = false } }
        for lock in locksToRelease.withLock({ $0 }) { await letGo(lock, lease: lease) }
        var deleted: [LedgerID] = []
        for id in ids {
            let lock = RecoveryKeys.lock(id)
            guard try await cluster.hold(lock, RecoveryHolder(bookie: me), lease: lease) else { continue }
            locksToRelease.withLock { _ = $0.insert(lock) }
            do {
                if let (metadata, _) = try await cluster.ledger(id), Self.isLeftBehind(metadata, by: me),
                   try await cluster.marks(of: id) == nil {
                    let answer = await withCheckedContinuation { done in bookie.deleteLedger(id) { done.resume(returning: $0) } }
                    if case .failed(let status, let message) = answer {
                        logger.warning("GC could not delete the copies of a ledger that no longer names this bookie", metadata: [
                            "ledger_id": "\(id.rawValue)", "status": "\(status)", "error": "\(message)"])
                    } else {
                        deleted.append(id)
                        collected.add(1, ordering: .relaxed)
                        logger.notice("GC deleted the copies of a closed ledger whose metadata no longer names this bookie (healing moved them)",
                                      metadata: ["ledger_id": "\(id.rawValue)", "bookie_id": "\(me)"])
                    }
                }
            } catch {
                await letGo(lock, lease: lease)
                throw error
            }
            await letGo(lock, lease: lease)
        }
        return deleted
    }

    /// Releases a lock GC took; one metadata does not let go of now stays listed for the next pass.
    private func letGo(_ lock: String, lease: LeaseID) async {
        guard (try? await cluster.release(lock, lease: lease)) != nil else { return }
        _ = locksToRelease.withLock { $0.remove(lock) }
    }
}
