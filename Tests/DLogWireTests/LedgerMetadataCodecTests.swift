import DLogTestSupport
import DLogWire
import Testing

@Suite struct LedgerMetadataCodecTests {
    static func random(_ rng: inout SeededGenerator) -> LedgerMetadata {
        let e = Int.random(in: 1...7, using: &rng)
        let qw = Int.random(in: 1...e, using: &rng)
        let qa = Int.random(in: 1...qw, using: &rng)
        var first: Int64 = 0
        var fragments: [LedgerMetadata.Fragment] = []
        for _ in 0..<Int.random(in: 1...5, using: &rng) {
            let bookies = (0..<e).map { BookieID("10.0.\(Int.random(in: 0...9, using: &rng)).\($0):3181") }
            fragments.append(.init(firstEntry: EntryID(first), bookies: bookies))
            first += Int64.random(in: 1...1_000_000, using: &rng)
        }
        let closed = Bool.random(using: &rng)
        var custom: [String: [UInt8]] = [:]
        for i in 0..<Int.random(in: 0...4, using: &rng) {
            custom["key\(i)"] = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        return LedgerMetadata(ensembleSize: e, writeQuorum: qw, ackQuorum: qa,
                              passwordHash: (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) },
                              fragments: fragments, state: closed ? .closed : .open,
                              lastEntry: closed ? EntryID(first) : .none, length: UInt64.random(in: 0...1 << 40, using: &rng),
                              creationTime: Int64.random(in: 0...2_000_000_000_000, using: &rng), custom: custom)
    }

    @Test func roundTripsAndEncodesCanonically() throws {
        // Proves decode(encode(m)) == m for many random ledgers, and that equal metadata encodes to equal bytes
        // (custom keys in sorted order), so a CAS compares what it means to.
        let seed = UInt64.random(in: 0...UInt64.max)
        print("LedgerMetadataCodecTests seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        for _ in 0..<300 {
            let metadata = Self.random(&rng)
            #expect(metadata.problem == nil)
            let bytes = LedgerMetadataCodec.encode(metadata)
            #expect(try LedgerMetadataCodec.decode(bytes) == metadata)
            var reordered = metadata
            reordered.custom = Dictionary(uniqueKeysWithValues: metadata.custom.reversed())
            #expect(LedgerMetadataCodec.encode(reordered) == bytes)
        }
    }

    @Test func truncatedOrCorruptBytesAreRefused() {
        // Proves every truncation and every single-byte corruption of stored metadata is refused with an
        // error, never decoded into something else.
        var rng = SeededGenerator(seed: 7)
        let bytes = LedgerMetadataCodec.encode(Self.random(&rng))
        for length in 0..<bytes.count {
            #expect(throws: LedgerMetadataCodec.Failure.self) { try LedgerMetadataCodec.decode(Array(bytes.prefix(length))) }
        }
        for index in bytes.indices {
            var damaged = bytes
            damaged[index] ^= 0x40
            #expect(throws: LedgerMetadataCodec.Failure.self) { try LedgerMetadataCodec.decode(damaged) }
        }
    }

    @Test func newerFormatIsRefusedByName() throws {
        // Proves metadata written by a newer format is refused with a message saying to upgrade.
        var rng = SeededGenerator(seed: 11)
        var bytes = Array(LedgerMetadataCodec.encode(Self.random(&rng)).dropLast(4))
        bytes[5] = 2
        bytes.appendBigEndian(CRC32C.checksum(bytes))
        do {
            _ = try LedgerMetadataCodec.decode(bytes)
            Issue.record("format 2 was decoded")
        } catch {
            #expect(error.description.contains("newer") && error.description.contains("upgrade"))
        }
    }

    @Test func inconsistentMetadataIsNamed() {
        // Proves quorum, fragment and state rules are checked and explained.
        let bookies = [BookieID("a:1"), BookieID("b:1"), BookieID("c:1")]
        var m = LedgerMetadata(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2, passwordHash: [],
                               fragments: [.init(firstEntry: EntryID(0), bookies: bookies)], creationTime: 0)
        #expect(m.problem == nil)
        m.ackQuorum = 4
        #expect(m.problem?.contains("E ≥ Qw ≥ Qa") == true)
        m.ackQuorum = 2
        m.fragments.append(.init(firstEntry: EntryID(0), bookies: bookies))
        #expect(m.problem?.contains("increasing") == true)
        m.fragments = [.init(firstEntry: EntryID(0), bookies: [bookies[0], bookies[0], bookies[1]])]
        #expect(m.problem?.contains("distinct") == true)
        m.fragments = [.init(firstEntry: EntryID(0), bookies: bookies)]
        m.lastEntry = EntryID(5)
        #expect(m.problem?.contains("closed") == true)
        #expect(BookieID("has/slash").problem != nil && BookieID("host:3181").problem == nil)
    }
}
