/// Every ledger's state, keyed by ledger id, remembering which ledgers changed since the last checkpoint took
/// its changes: so a checkpoint writes those ledgers only (`IndexDelta`), however many ledgers are idle.
/// Every write goes through the subscripts, so no change can miss the mark.
///
/// Memory is what a million idle ledgers cost, so the bulk is kept compact: a *base* of ids and states in two
/// arrays sorted by id (64 bytes a ledger), and an *overlay* dictionary of what changed since the base was last
/// rebuilt (a nil state removes a base ledger). A dictionary of all of them took about twice that, its buckets
/// half empty after each doubling. Lookups try the overlay, then search the base; the overlay is folded into
/// the base once it holds more than a quarter as many ledgers (and at least 4,096), so folding costs a few moves
/// per change, and ledgers written often stay in the overlay between folds.
struct LedgerTable: Equatable, Codable, Sendable {
    private var baseIDs: [UInt64] = []
    private var baseStates: [LedgerState] = []
    private var overlay: [UInt64: LedgerState?] = [:]
    private(set) var count = 0
    /// Set or removed since `takeChanged`.
    private(set) var changed: Set<UInt64> = []

    static let overlayMin = 4_096

    init() {}

    init(_ states: [UInt64: LedgerState]) {
        for (id, state) in states { restore(id, state) }
    }

    subscript(_ id: UInt64) -> LedgerState? {
        get { lookup(id) }
        set {
            store(id, newValue)
            changed.insert(id)
        }
    }

    subscript(_ id: UInt64, default fallback: @autoclosure () -> LedgerState) -> LedgerState {
        get { lookup(id) ?? fallback() }
        set {
            store(id, newValue)
            changed.insert(id)
        }
    }

    /// Changes `id`'s state in place, found with one lookup; nil when there is none. (The subscripts' get and set
    /// took three lookups, on a path every add takes twice.)
    mutating func update<R>(_ id: UInt64, _ body: (inout LedgerState) -> R) -> R? {
        if let i = overlay.index(forKey: id) {
            guard overlay.values[i] != nil else { return nil }  // a base ledger removed
            changed.insert(id)
            return body(&overlay.values[i]!)
        }
        guard let j = baseIndex(id) else { return nil }
        changed.insert(id)
        return body(&baseStates[j])
    }

    /// `update`, creating the state as `fallback` when there is none.
    mutating func update<R>(_ id: UInt64, orInsert fallback: @autoclosure () -> LedgerState,
                            _ body: (inout LedgerState) -> R) -> R {
        if let r = update(id, body) { return r }
        var state = fallback()
        let r = body(&state)
        self[id] = state
        return r
    }

    /// The ledgers of `tables` (which hold distinct ids) in one table, built in id order: the whole ledger table
    /// for an index snapshot, from the shards that hold it.
    init(merging tables: [LedgerTable]) {
        guard tables.count > 1 else {
            self = tables.first ?? LedgerTable()
            changed = []
            return
        }
        var lists = tables.map { t -> [(UInt64, LedgerState)] in
            var list: [(UInt64, LedgerState)] = []
            list.reserveCapacity(t.count)
            t.forEach { list.append(($0, $1)) }
            return list
        }
        reserveCapacity(lists.reduce(0) { $0 + $1.count })
        var next = Array(repeating: 0, count: lists.count)
        while true {
            var pick = -1
            for i in lists.indices where next[i] < lists[i].count {
                if pick < 0 || lists[i][next[i]].0 < lists[pick][next[pick]].0 { pick = i }
            }
            guard pick >= 0 else { break }
            let (id, state) = lists[pick][next[pick]]
            restore(id, state)
            next[pick] += 1
        }
        lists = []
    }

    /// Sets or removes a state as read from disk: not a change to write back.
    mutating func restore(_ id: UInt64, _ state: LedgerState?) { store(id, state) }

    mutating func reserveCapacity(_ n: Int) {
        baseIDs.reserveCapacity(n)
        baseStates.reserveCapacity(n)
    }

    var isEmpty: Bool { count == 0 }

    /// The ids changed since the last call, and forgets them.
    mutating func takeChanged() -> Set<UInt64> {
        defer { changed = [] }
        return changed
    }

    /// Every ledger id, ascending.
    var sortedIDs: [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(count)
        forEach { id, _ in out.append(id) }
        return out
    }

    /// Calls `body` with every ledger, in ascending id order.
    func forEach(_ body: (UInt64, LedgerState) -> Void) {
        let changes = overlay.keys.sorted()
        var c = 0
        for (i, id) in baseIDs.enumerated() {
            while c < changes.count && changes[c] < id {
                if let state = overlay[changes[c]]! { body(changes[c], state) }
                c += 1
            }
            if c < changes.count && changes[c] == id {
                if let state = overlay[id]! { body(id, state) }
                c += 1
            } else {
                body(id, baseStates[i])
            }
        }
        for id in changes[c...] { if let state = overlay[id]! { body(id, state) } }
    }

    private func lookup(_ id: UInt64) -> LedgerState? {
        if let changed = overlay[id] { return changed }
        return baseIndex(id).map { baseStates[$0] }
    }

    private func baseIndex(_ id: UInt64) -> Int? {
        let low = baseIDs.sortedSlot(of: id)
        return low < baseIDs.count && baseIDs[low] == id ? low : nil
    }

    private mutating func store(_ id: UInt64, _ state: LedgerState?) {
        // A new highest id with nothing pending joins the base at its end: how a snapshot (written in id order)
        // loads, and how ledgers, whose ids grow, are mostly created.
        if overlay.isEmpty, let state, baseIDs.last.map({ id > $0 }) ?? true {
            baseIDs.append(id)
            baseStates.append(state)
            count += 1
            return
        }
        let existed = lookup(id) != nil
        count += (state != nil ? 1 : 0) - (existed ? 1 : 0)
        if state == nil && baseIndex(id) == nil {
            overlay[id] = nil  // not in the base: nothing to hide
        } else {
            overlay[id] = .some(state)
        }
        if overlay.count > max(Self.overlayMin, baseIDs.count / 4) { fold() }
    }

    /// Rebuilds the base with the overlay in it, and empties the overlay.
    private mutating func fold() {
        var ids: [UInt64] = []
        var states: [LedgerState] = []
        ids.reserveCapacity(count)
        states.reserveCapacity(count)
        forEach { id, state in
            ids.append(id)
            states.append(state)
        }
        baseIDs = ids
        baseStates = states
        overlay = [:]
    }

    /// Equal states; which ledgers changed, and how they are laid out, is bookkeeping.
    static func == (a: Self, b: Self) -> Bool {
        guard a.count == b.count else { return false }
        var left: [(UInt64, LedgerState)] = []
        a.forEach { left.append(($0, $1)) }
        var i = 0, same = true
        b.forEach { id, state in
            if same { same = left[i].0 == id && left[i].1 == state }
            i += 1
        }
        return same
    }

    /// As a dictionary of ledger id to state (the JSON manifest of earlier versions).
    init(from decoder: Decoder) throws { self.init(try [UInt64: LedgerState](from: decoder)) }

    func encode(to encoder: Encoder) throws {
        var states: [UInt64: LedgerState] = [:]
        forEach { states[$0] = $1 }
        try states.encode(to: encoder)
    }
}
