import DLogWire

extension LedgerStorage {
    /// The entries of `ledger` this bookie stores, with ids ≥ `from`, as ascending disjoint ranges: from the
    /// write cache, and from the entry logs that hold the ledger. A file that holds a ledger's range whole
    /// (its count fills first…last) is taken from the manifest alone; a file with holes in it (a write set
    /// that skips this bookie, a position written around) is read from its index. At most `rangesMax` ranges;
    /// `next` is the first id of the range left out. nil when the ledger is not on this bookie.
    ///
    /// Blocking (it may read indexes): never call on an event loop. It is what an audit compares with the
    /// ledger's metadata, so it reports only what is on this bookie now, never what should be.
    public func storedEntries(_ ledger: LedgerID, from: EntryID, rangesMax: Int) throws -> (ranges: [EntryRange], next: EntryID?)? {
        precondition(rangesMax >= 1)
        let start = max(from.rawValue, 0)
        // The entry-log list is searched outside the lock, as it was when the cache was looked at.
        guard let (cached, entryLogs) = ledgers.withShard(ledger.rawValue, { s -> ([Int64], [EntryLogInfo])? in
            guard s.ledgers[ledger.rawValue] != nil else { return nil }
            return ((s.cache[ledger]?.ids ?? []) + (s.flushing?[ledger]?.ids ?? []),
                    ledgers.catalog.withLock { $0.manifest.entryLogs })
        }) else { return nil }
        let files = entryLogs.compactMap { info in info.ledgers[ledger.rawValue].map { (info.id, $0) } }
            .filter { $0.1.last >= start }
        var ranges = EntryRange.ranges(of: cached.filter { $0 >= start }.sorted())
        for (id, range) in files {
            if Int64(range.count) == range.last - range.first + 1 {
                ranges.append(EntryRange(EntryID(max(range.first, start)), EntryID(range.last)))
                continue
            }
            // Compacted or removed since the snapshot: its entries are in the file that replaced it, listed too.
            guard let reader = try openReader(id) else { continue }
            let ids = try reader.rows().lazy.filter { $0.0 == ledger.rawValue && $0.1 >= start }.map(\.1)
            ranges += EntryRange.ranges(of: ids)
        }
        let merged = Self.merge(ranges)
        guard merged.count > rangesMax else { return (merged, nil) }
        return (Array(merged.prefix(rangesMax)), merged[rangesMax].first)
    }

    /// Ranges in any order, overlapping or adjacent, as ascending disjoint ranges with gaps between them.
    static func merge(_ ranges: [EntryRange]) -> [EntryRange] {
        var out: [EntryRange] = []
        for range in ranges.sorted(by: { $0.first < $1.first }) {
            if let last = out.last, range.first.rawValue <= last.last.rawValue + 1 {
                out[out.count - 1].last = max(last.last, range.last)
            } else {
                out.append(range)
            }
        }
        return out
    }
}
