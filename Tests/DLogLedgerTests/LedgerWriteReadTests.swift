import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Testing

@Suite struct LedgerWriteReadTests {
    @Test(arguments: [(3, 3, 3, 2), (5, 5, 3, 2)])
    func pipelinedAddsAreConfirmedInOrderAndReadBack(_ shape: (Int, Int, Int, Int)) async throws {
        // Proves many concurrent adds get consecutive ids, each confirmed by an ack quorum of its write set,
        // and that after close the metadata says CLOSED with the last entry and length, and every entry reads
        // back byte-exact from the bookies.
        let (bookies, e, qw, qa) = shape
        try await withLedgerCluster(bookies: bookies) { fixture in
            var rng = SeededGenerator(seed: 5)
            let quorums = try #require(Quorums(ensembleSize: e, writeQuorum: qw, ackQuorum: qa))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "secret", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            #expect(Set(writer.ensemble).count == e)
            let ids = try await withThrowingTaskGroup(of: (Int, EntryID).self) { group in
                for n in 0..<200 { group.addTask { (n, try await writer.append(payload(n))) } }
                return try await group.reduce(into: [Int: EntryID]()) { $0[$1.0] = $1.1 }
            }
            #expect(Set(ids.values) == Set((0..<200).map { EntryID(Int64($0)) }), "ids are 0...199, each once")
            #expect(writer.lastAddConfirmed == EntryID(199))
            let closed = try await writer.close()
            #expect(closed.state == .closed && closed.lastEntry == EntryID(199))
            let expectedLength = ids.keys.reduce(UInt64(0)) { $0 + UInt64(payload($1).count) }
            #expect(closed.length == expectedLength)
            await #expect(throws: LedgerError.self) { _ = try await writer.append([1]) }

            let reader = try await LedgerReader.open(writer.id, password: "secret", pool: fixture.pool)
            #expect(reader.lastAddConfirmed == EntryID(199))
            for (n, id) in ids { #expect(try await reader.read(id) == payload(n), "entry \(id)") }
            let byEntry = Dictionary(uniqueKeysWithValues: ids.map { ($0.value, payload($0.key)) })
            let range = try await reader.read(from: EntryID(0), through: EntryID(199), parallel: 7)
            #expect(range == (0..<200).map { byEntry[EntryID(Int64($0))]! }, "a range read returns every entry in order")
            await #expect(throws: LedgerError.invalidRange(writer.id, first: EntryID(5), last: EntryID(3))) {
                _ = try await reader.read(from: EntryID(5), through: EntryID(3))
            }
            await #expect(throws: LedgerError.beyondLastAddConfirmed(writer.id, entry: EntryID(200), lac: EntryID(199))) {
                _ = try await reader.read(from: EntryID(190), through: EntryID(200))
            }
            await #expect(throws: LedgerError.beyondLastAddConfirmed(writer.id, entry: EntryID(200), lac: EntryID(199))) {
                _ = try await reader.read(EntryID(200))
            }
        }
    }

    @Test func closingTogetherWithARecordCommitsBothOrNeither() async throws {
        // Proves a close with a record of the caller's commits both in one transaction (the record's version is
        // the ledger's new one), and that when the record's check fails neither changes: the ledger stays open
        // in metadata, the conflict reaches the caller, and the record keeps its old value.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 8)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let store = fixture.pool.cluster.store
            let record = "/test/closed-with"
            let created = Version(try await store.commit(Transaction(operations: [.put(key: record, value: [0], lease: nil)])))
            func closing(_ writer: LedgerWriter, ifRecordAt version: Version) async throws -> (metadata: LedgerMetadata, committed: Version) {
                try await writer.close { closed in
                    Transaction(checks: [.init(key: record, version: version)],
                                operations: [.put(key: record, value: [UInt8(closed.lastEntry.rawValue)], lease: nil)])
                }
            }

            let stale = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                      allocator: fixture.allocator, using: &rng)
            for n in 0..<3 { _ = try await stale.append(payload(n)) }
            await #expect(throws: MetadataError.self) { _ = try await closing(stale, ifRecordAt: Version(created.rawValue + 1_000)) }
            #expect(try await fixture.pool.cluster.ledger(stale.id)?.0.state == .open)
            #expect(try await store.get(record)?.value == [0])

            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<5 { _ = try await writer.append(payload(n)) }
            let (closed, committed) = try await closing(writer, ifRecordAt: created)
            let (stored, version) = try #require(try await fixture.pool.cluster.ledger(writer.id))
            #expect(stored.state == .closed && stored.lastEntry == EntryID(4) && closed == stored && version == committed)
            let item = try #require(try await store.get(record))
            #expect(item.value == [4] && item.version == committed)
        }
    }

    @Test func readerOfAnOpenLedgerStopsAtTheLastAddConfirmed() async throws {
        // Proves a reader of a ledger still being written sees entries only up to the LAC the bookies report
        // (the piggybacked one, or the one an idle writer wrote), never past it.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 6)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<10 { _ = try await writer.append(payload(n)) }
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            // Entry 9 carried LAC 8; the idle writer then writes LAC 9 explicitly, shortly after.
            let lac = reader.lastAddConfirmed
            #expect(lac == EntryID(8) || lac == EntryID(9), "LAC \(lac)")
            #expect(try await reader.read(lac) == payload(Int(lac.rawValue)))
            let past = EntryID(lac.rawValue + 1)
            await #expect(throws: LedgerError.beyondLastAddConfirmed(writer.id, entry: past, lac: lac)) {
                _ = try await reader.read(past)
            }
            _ = try await writer.append(payload(10))
            #expect(try await reader.refreshLastAddConfirmed() >= EntryID(9))
            await #expect(throws: LedgerError.wrongPassword(writer.id)) {
                _ = try await LedgerReader.open(writer.id, password: "nope", pool: fixture.pool)
            }
        }
    }

    @Test func aFencedWriterFailsEveryLaterAdd() async throws {
        // Proves that once another client fences the ledger on its bookies, the writer's next add and every
        // add after it fail with a clear "fenced" error.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 7)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<5 { _ = try await writer.append(payload(n)) }
            for bookie in writer.ensemble {
                let client = try await fixture.pool.client(for: bookie)
                _ = try await client.send(.read(ledger: writer.id, entry: .none, fenceWith: LedgerPassword("pw").masterKey))
            }
            await #expect(throws: LedgerError.fenced(writer.id)) { _ = try await writer.append(payload(5)) }
            await #expect(throws: LedgerError.fenced(writer.id)) { _ = try await writer.append(payload(6)) }
        }
    }

    @Test func closeUnderSteadyLoadEndsAtTheLastConfirmedEntry() async throws {
        // Proves close() returns while other tasks keep adding (new adds are refused from the moment it is
        // called, the ones in flight finish), and every add that was confirmed lies within the closed ledger.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 8)
            let writer = try await LedgerWriter.create(quorums: Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!,
                                                       password: "pw", pool: fixture.pool, allocator: fixture.allocator, using: &rng)
            let lanes = (0..<8).map { lane in
                Task { () -> (confirmed: [EntryID], refusal: LedgerError?) in
                    var confirmed: [EntryID] = []
                    while true {
                        do {
                            confirmed.append(try await writer.append(payload(lane)))
                        } catch {
                            return (confirmed, error as? LedgerError)
                        }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            let closing = Task { try await writer.close() }
            let outcome = try await withThrowingTaskGroup(of: LedgerMetadata?.self) { group in
                group.addTask { try await closing.value }
                group.addTask {
                    try await Task.sleep(for: .seconds(20))
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
            let closed = try #require(outcome, "close returned under load")
            #expect(closed.state == .closed)
            var total = 0
            for lane in lanes {
                let (confirmed, refusal) = await lane.value
                total += confirmed.count
                #expect(confirmed.allSatisfy { $0 <= closed.lastEntry }, "a confirmed add lies past the close")
                if case .writerClosed? = refusal {} else { Issue.record("lane ended with \(String(describing: refusal))") }
            }
            #expect(total == Int(closed.lastEntry.rawValue) + 1, "every entry up to the end was confirmed to a caller")
        }
    }
}
