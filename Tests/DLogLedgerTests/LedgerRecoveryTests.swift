import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Testing

@Suite struct LedgerRecoveryTests {
    /// A ledger with `confirmed` entries acknowledged to its writer and `inFlight` more sent without waiting:
    /// the writer is then abandoned, as if its process died.
    static func abandonedLedger(_ fixture: LedgerFixture, confirmed: Int, inFlight: Int) async throws -> LedgerWriter {
        var rng = SeededGenerator(seed: 21)
        let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                   allocator: fixture.allocator, using: &rng)
        for n in 0..<confirmed { _ = try await writer.append(payload(n)) }
        for n in confirmed..<confirmed + inFlight { Task { _ = try? await writer.append(payload(n)) } }
        return writer
    }

    @Test func recoveryKeepsEveryConfirmedEntryAndFencesTheWriter() async throws {
        // Proves recovery closes an abandoned ledger at or after every entry its writer confirmed, with every
        // entry up to the end readable byte-exact (no hole), and that the old writer can add nothing more.
        try await withLedgerCluster(bookies: 3) { fixture in
            let writer = try await Self.abandonedLedger(fixture, confirmed: 30, inFlight: 10)
            let closed = try await LedgerRecovery(pool: fixture.pool).recover(writer.id, password: "pw")
            #expect(closed.state == .closed)
            #expect(closed.lastEntry >= EntryID(29) && closed.lastEntry <= EntryID(39))
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            var length: UInt64 = 0
            var inFlightSeen: Set<[UInt8]> = []
            for n in 0...Int(closed.lastEntry.rawValue) {
                let bytes = try await reader.read(EntryID(Int64(n)))
                if n < 30 {
                    #expect(bytes == payload(n), "confirmed entry \(n)")
                } else {
                    // Adds sent without waiting took entry ids in whatever order their tasks ran.
                    #expect((30..<40).map { payload($0) }.contains(bytes), "entry \(n) holds one of the adds sent")
                    #expect(inFlightSeen.insert(bytes).inserted, "entry \(n) repeats an earlier add")
                }
                length += UInt64(bytes.count)
            }
            #expect(closed.length == length)
            await #expect(throws: LedgerError.self) { _ = try await writer.append(payload(99)) }
        }
    }

    @Test func concurrentRecoverersConverge() async throws {
        // Proves two clients recovering the same ledger at once end with one closed state: both see the same
        // result, or the loser gets a clear error.
        try await withLedgerCluster(bookies: 3) { fixture in
            let writer = try await Self.abandonedLedger(fixture, confirmed: 15, inFlight: 5)
            let other = BookiePool(cluster: fixture.cluster)
            async let first = Result { try await LedgerRecovery(pool: fixture.pool).recover(writer.id, password: "pw") }
            async let second = Result { try await LedgerRecovery(pool: other).recover(writer.id, password: "pw") }
            let results = await [first, second]
            await other.shutdown()
            let closed = results.compactMap { try? $0.get() }
            #expect(!closed.isEmpty, "at least one recoverer finished: \(results)")
            #expect(Set(closed.map(\.lastEntry)).count == 1 && Set(closed.map(\.length)).count == 1)
            for case .failure(let error) in results { #expect("\(error)".contains("recover")) }
            let stored = try #require(try await fixture.cluster.ledger(writer.id)).metadata
            #expect(stored.state == .closed && stored.lastEntry == closed[0].lastEntry)
        }
    }

    @Test func recoveryGoesOnWithoutADeadBookie() async throws {
        // Proves recovery completes with one bookie of the ensemble dead (Qw − Qa + 1 = 2 of 3 can be fenced),
        // and that a closed ledger is returned as it is.
        try await withLedgerCluster(bookies: 3) { fixture in
            let writer = try await Self.abandonedLedger(fixture, confirmed: 12, inFlight: 0)
            fixture.kill(writer.ensemble[0])
            let recovery = LedgerRecovery(pool: fixture.pool)
            let closed = try await recovery.recover(writer.id, password: "pw")
            #expect(closed.lastEntry == EntryID(11))
            #expect(try await recovery.recover(writer.id, password: "pw") == closed)
            await #expect(throws: LedgerError.wrongPassword(writer.id)) {
                _ = try await recovery.recover(writer.id, password: "wrong")
            }
        }
    }

    @Test func recoveryStartsNoEarlierThanTheLastFragment() async throws {
        // Proves recovery does not re-read or re-write entries of an older fragment, even when the LAC the
        // fenced bookies report is older (a deep pipeline resent to a replacement carries stale LACs): with
        // Qw = Qa, re-writing to the old fragment would need its dead bookie, and recovery would never finish.
        try await withLedgerCluster(bookies: 4) { fixture in
            let secret = LedgerPassword("pw")
            let id = try await fixture.allocator.next()
            let (dead, old, new1, new2) = (BookieID("bookie-3"), BookieID("bookie-0"), BookieID("bookie-1"), BookieID("bookie-0"))
            let metadata = LedgerMetadata(ensembleSize: 2, writeQuorum: 2, ackQuorum: 2, passwordHash: secret.check,
                                          fragments: [.init(firstEntry: EntryID(0), bookies: [dead, old]),
                                                      .init(firstEntry: EntryID(5), bookies: [new1, new2])],
                                          creationTime: 0)
            _ = try await fixture.cluster.createLedger(id, metadata)
            fixture.kill(dead)
            // Entries as a writer would have left them: 0...4 on the old fragment's live bookie, 5...7 on the
            // new fragment, every header carrying the LAC of when it was first sent (none yet).
            var length: UInt64 = 0
            for n in 0..<8 {
                length += UInt64(payload(n).count)
                let bytes = EntryCodec.encode(EntryHeader(ledger: id, entry: EntryID(Int64(n)), lastAddConfirmed: .none,
                                                          ledgerLength: length), payload: payload(n))
                for bookie in n < 5 ? [old] : [new1, new2] {
                    let reply = try await fixture.pool.send(.add(masterKey: secret.masterKey, entry: bytes, recovery: false),
                                                            to: bookie, timeout: .seconds(10))
                    #expect(reply == .added(ledger: id, entry: EntryID(Int64(n))), "entry \(n) on \(bookie)")
                }
            }
            let closed = try await LedgerRecovery(pool: fixture.pool).recover(id, password: "pw")
            #expect(closed.state == .closed && closed.lastEntry == EntryID(7) && closed.length == length)
        }
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}