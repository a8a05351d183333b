import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Synchronization
import Testing

@Suite struct TailingTests {
    @Test func anIdleWriterMakesItsLastEntryVisible() async throws {
        // Proves that once the writer is idle its LAC is written explicitly, so a reader can read the last
        // entry without waiting for another add.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 31)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            for n in 0..<5 { _ = try await writer.append(payload(n)) }
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            let lac = try await reader.waitForLastAddConfirmed(after: EntryID(3), timeout: .seconds(10))
            #expect(lac == EntryID(4))
            #expect(try await reader.read(EntryID(4)) == payload(4))
        }
    }

    @Test func aTailingReaderSeesEveryEntryOnceInOrderNeverPastLAC() async throws {
        // Proves a reader tailing an open ledger gets every entry once, in order, as it is confirmed, never one
        // past the writer's LAC, and ends after the last entry when the writer closes the ledger.
        try await withLedgerCluster(bookies: 3) { fixture in
            var rng = SeededGenerator(seed: 32)
            let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
            let writer = try await LedgerWriter.create(quorums: quorums, password: "pw", pool: fixture.pool,
                                                       allocator: fixture.allocator, using: &rng)
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: fixture.pool)
            let tail = Task {
                var seen: [(EntryID, [UInt8])] = []
                for try await (entry, bytes) in reader.tail(pollTimeout: .milliseconds(500)) {
                    // The writer confirmed this entry before any bookie could report it confirmed.
                    #expect(entry <= writer.lastAddConfirmed, "\(entry) delivered past the writer's LAC")
                    seen.append((entry, bytes))
                }
                return seen
            }
            for n in 0..<60 {
                _ = try await writer.append(payload(n))
                if n % 7 == 0 { try await Task.sleep(for: .milliseconds(15)) }
            }
            try await writer.close()
            let seen = try await withTimeout(30, "tailing to the end") { try await tail.value }
            #expect(seen.map(\.0) == (0..<60).map { EntryID(Int64($0)) })
            #expect(seen.allSatisfy { $0.1 == payload(Int($0.0.rawValue)) })
        }
    }
}
