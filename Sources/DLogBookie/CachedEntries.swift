/// One ledger's entries in the write cache, in entry order. Adds arrive in order, so keeping one is an append,
/// and a checkpoint writes a ledger's entries without sorting them. (A dictionary per ledger cost two hash
/// lookups per add and a sort of every cached entry at each checkpoint.)
struct CachedEntries: Sendable {
    private(set) var ids: [Int64] = []
    private var payloads: [[UInt8]] = []
    /// Bytes of all the entries.
    private(set) var bytes = 0

    var count: Int { ids.count }

    /// Where `entry` is or would go in `ids`.
    private func slot(of entry: Int64) -> Int { ids.sortedSlot(of: entry) }

    subscript(entry: Int64) -> [UInt8]? {
        let i = slot(of: entry)
        return i < ids.count && ids[i] == entry ? payloads[i] : nil
    }

    /// Keeps `payload` as `entry`; returns the payload it replaced, if any.
    @discardableResult
    mutating func set(_ entry: Int64, _ payload: [UInt8]) -> [UInt8]? {
        bytes += payload.count
        // Adds come in entry order: the next one goes at the end, found without a search.
        if ids.last.map({ entry > $0 }) ?? true {
            ids.append(entry)
            payloads.append(payload)
            return nil
        }
        let i = slot(of: entry)
        if i < ids.count && ids[i] == entry {
            let replaced = payloads[i]
            payloads[i] = payload
            bytes -= replaced.count
            return replaced
        }
        if i == ids.count {
            ids.append(entry)
            payloads.append(payload)
        } else {
            ids.insert(entry, at: i)
            payloads.insert(payload, at: i)
        }
        return nil
    }

    /// Calls `body` with every entry, in entry order.
    func forEach(_ body: (Int64, [UInt8]) -> Void) {
        for i in ids.indices { body(ids[i], payloads[i]) }
    }
}
