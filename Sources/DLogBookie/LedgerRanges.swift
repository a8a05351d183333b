/// The live ledgers of one entry log, each with its range, in ledger id order: two arrays, 40 bytes a ledger.
/// A dictionary took about 70 (its table is a power of two, at most three quarters full), and entry logs list
/// every ledger a bookie stores, so with a million ledgers the difference was some 30 MB of a bookie's RSS.
///
/// Entry logs are written sorted by ledger, so building one appends. A deleted ledger leaves a hole (a range
/// with count 0, which no live ledger has) so a delete costs no shifting of the arrays; the arrays are rebuilt
/// without holes once holes outnumber live ledgers.
public struct LedgerRanges: Sendable, Sequence, ExpressibleByDictionaryLiteral, Codable {
    private var ids: [UInt64] = []
    private var ranges: [EntryLogLedgerRange] = []
    /// Live ledgers (holes not counted).
    public private(set) var count = 0

    public init() {}

    public init(_ dictionary: [UInt64: EntryLogLedgerRange]) {
        reserveCapacity(dictionary.count)
        for (ledger, range) in dictionary.sorted(by: { $0.key < $1.key }) { self[ledger] = range }
    }

    /// From ledgers as a file lists them: in id order as written since the index sorts them (then this only
    /// appends), in any order as earlier versions wrote them; of a ledger listed twice the last range counts.
    init(listed: [(UInt64, EntryLogLedgerRange)]) {
        var listed = listed
        if !zip(listed, listed.dropFirst()).allSatisfy({ $0.0 < $1.0 }) {
            // Stable, so the last of a ledger listed twice stays last.
            listed = listed.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element)
        }
        reserveCapacity(listed.count)
        for (ledger, range) in listed where range.count > 0 {
            if ids.last == ledger {
                ranges[ranges.count - 1] = range
            } else {
                ids.append(ledger)
                ranges.append(range)
                count += 1
            }
        }
    }

    public init(dictionaryLiteral elements: (UInt64, EntryLogLedgerRange)...) {
        self.init(Dictionary(elements, uniquingKeysWith: { $1 }))
    }

    public var isEmpty: Bool { count == 0 }

    mutating func reserveCapacity(_ n: Int) {
        ids.reserveCapacity(n)
        ranges.reserveCapacity(n)
    }

    /// Where `ledger` is or would go in `ids`.
    private func slot(of ledger: UInt64) -> Int { ids.sortedSlot(of: ledger) }

    /// The ledger's range; nil when the file holds no live entry of it. Setting nil removes it.
    public subscript(ledger: UInt64) -> EntryLogLedgerRange? {
        get {
            let i = slot(of: ledger)
            guard i < ids.count, ids[i] == ledger, ranges[i].count > 0 else { return nil }
            return ranges[i]
        }
        set {
            let i = slot(of: ledger)
            let present = i < ids.count && ids[i] == ledger
            let wasLive = present && ranges[i].count > 0
            guard let range = newValue else {
                guard wasLive else { return }
                ranges[i].count = 0
                count -= 1
                if ids.count - count > Swift.max(count, 64) { removeHoles() }
                return
            }
            precondition(range.count > 0, "a live ledger has entries in the file")
            if present {
                ranges[i] = range
            } else {
                ids.insert(ledger, at: i)
                ranges.insert(range, at: i)
            }
            if !wasLive { count += 1 }
        }
    }

    /// Adds one entry of `ledger` (entries come sorted by ledger, so this appends or grows the last range).
    mutating func add(ledger: UInt64, entry: Int64, bytes: Int) {
        if ids.last == ledger, ranges[ranges.count - 1].count > 0 {
            ranges[ranges.count - 1].include(entry, bytes: bytes)
        } else if var range = self[ledger] {
            range.include(entry, bytes: bytes)
            self[ledger] = range
        } else {
            self[ledger] = EntryLogLedgerRange(first: entry, last: entry, count: 1, bytes: bytes)
        }
    }

    /// Only the ledgers `isIncluded` keeps.
    public func keeping(_ isIncluded: (UInt64) -> Bool) -> LedgerRanges {
        var kept = LedgerRanges()
        kept.reserveCapacity(count)
        for (ledger, range) in self where isIncluded(ledger) {
            kept.ids.append(ledger)
            kept.ranges.append(range)
            kept.count += 1
        }
        return kept
    }

    /// Bytes of the live entries.
    public var bytes: Int { reduce(0) { $0 + $1.value.bytes } }

    private mutating func removeHoles() {
        self = keeping { _ in true }
    }

    public struct Iterator: IteratorProtocol {
        fileprivate let ranges: LedgerRanges
        fileprivate var position = 0

        public mutating func next() -> (key: UInt64, value: EntryLogLedgerRange)? {
            while position < ranges.ids.count {
                defer { position += 1 }
                if ranges.ranges[position].count > 0 { return (ranges.ids[position], ranges.ranges[position]) }
            }
            return nil
        }
    }

    public func makeIterator() -> Iterator { Iterator(ranges: self) }
    public var underestimatedCount: Int { count }

    /// The JSON manifest of earlier versions wrote a dictionary. Its ranges come from disk: one that cannot be
    /// (a negative count, entries before 0 or after its last) is an error naming the ledger, not a trap; a
    /// range with no entries lists nothing, as in the ledger index.
    public init(from decoder: Decoder) throws {
        let listed = try [UInt64: EntryLogLedgerRange](from: decoder)
        for (ledger, range) in listed where range.count < 0 || range.count > 0 && (range.first < 0 || range.first > range.last) {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription:
                "ledger \(ledger) has an impossible range: first \(range.first), last \(range.last), count \(range.count)"))
        }
        self.init(listed.filter { $0.value.count > 0 })
    }

    public func encode(to encoder: Encoder) throws {
        try Dictionary(uniqueKeysWithValues: map { ($0.key, $0.value) }).encode(to: encoder)
    }
}

extension EntryLogLedgerRange {
    mutating func include(_ entry: Int64, bytes: Int) {
        first = min(first, entry)
        last = max(last, entry)
        count += 1
        self.bytes += bytes
    }
}

extension LedgerRanges: Equatable {
    /// The same live ledgers with the same ranges, wherever the holes are.
    public static func == (a: Self, b: Self) -> Bool {
        a.count == b.count && a.elementsEqual(b) { $0.key == $1.key && $0.value == $1.value }
    }
}
