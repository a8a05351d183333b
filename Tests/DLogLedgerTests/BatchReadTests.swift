import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Testing

@Suite struct BatchReadTests {
    /// Reads of `from...through` of one ledger, and the READ and READ_RANGE requests they cost the bookies.
    static func read(_ reader: LedgerReader, _ first: Int64, _ last: Int64, fixture: LedgerFixture) async throws
        -> (payloads: [[UInt8]], requests: UInt64) {
        func requests() -> UInt64 {
            fixture.bookies.reduce(0) { $0 + $1.bookie.readsReceived.load(ordering: .relaxed) }
        }
        let before = requests()
        let payloads = try await reader.read(from: EntryID(first), through: EntryID(last))
        return (payloads, requests() - before)
    }

    /// A range of entries every bookie holds (write quorum = ensemble) comes in one READ_RANGE, not one READ
    /// per entry: the defect was a reader a few entries behind its writer paying a request, tasks and a timer
    /// per entry, so much that under load it fell further behind. Striped ledgers still read entry by entry.
    @Test func aRangeEveryBookieHoldsIsOneRequest() async throws {
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 41)
            for (quorums, perEntry) in [(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!, false),
                                        (Quorums(ensembleSize: 3, writeQuorum: 2, ackQuorum: 2)!, true)] {
                let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                           allocator: fixture.allocator, using: &rng)
                for n in 0..<20 { _ = try await writer.append(payload(n)) }
                try await writer.close()
                let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
                let (payloads, requests) = try await Self.read(reader, 2, 17, fixture: fixture)
                #expect(payloads == (2...17).map { payload($0) }, "\(quorums)")
                #expect(requests == (perEntry ? 16 : 1), "\(quorums): \(requests) requests for 16 entries")
            }
        }
    }

    /// The bookie a batch goes to is gone: the entries are read one by one from the others, all of them, in
    /// order.
    @Test func aBatchWhoseBookieIsGoneIsReadEntryByEntry() async throws {
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 42)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<10 { _ = try await writer.append(payload(n)) }
            try await writer.close()
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            let ensemble = reader.metadata.fragments.last!.bookies
            fixture.kill(ensemble[quorums.writeSet(of: EntryID(3))[0]])
            let payloads = try await withTimeout(30, "reading past a gone bookie") {
                try await reader.read(from: EntryID(3), through: EntryID(9))
            }
            #expect(payloads == (3...9).map { payload($0) })
        }
    }
}
