import DLogLedger
import DLogMetadata
import DLogWire
import Testing

@Suite struct CopyPacerTests {
    @Test func copiesStayWithinTheRatePlusOneBurst() {
        // Proves the pacer holds copies to the byte rate: one burst's worth goes at once, then each further copy
        // waits as long as its bytes take at the rate; idle time refills the bucket, never beyond one burst.
        var pacer = CopyPacer(bytesPerSecond: 1000, burst: .seconds(1))
        let start = ContinuousClock.now
        var waits: [Duration] = []
        waits.append(pacer.spend(1000, now: start))
        waits.append(pacer.spend(500, now: start))
        waits.append(pacer.spend(0, now: start + .milliseconds(500)))
        // Ten idle seconds refill only one second's worth.
        waits.append(pacer.spend(1000, now: start + .seconds(10)))
        waits.append(pacer.spend(100, now: start + .seconds(10)))
        #expect(waits == [.zero, .milliseconds(500), .zero, .zero, .milliseconds(100)])
        var unpaced = CopyPacer(bytesPerSecond: 0)
        let none = unpaced.spend(1 << 30, now: start)
        #expect(none == .zero)
    }

    @Test func aPacedCopyGoesOutInPiecesOfAboutA64thOfASecond() {
        // A foreground add waits in a journal behind one piece of a copy: paced at the default 16 MiB/s a piece is
        // 256 KiB (it was a whole 1 MiB batch), never under 64 KiB, and unpaced copies keep whole batches.
        var settings = ReplicationWorker.Settings()
        #expect(settings.pieceBytes == 256 << 10)
        settings.rateBytesPerSecond = 1 << 20
        #expect(settings.pieceBytes == 64 << 10)
        settings.rateBytesPerSecond = 1 << 30
        #expect(settings.pieceBytes == 1 << 20)
        settings.rateBytesPerSecond = 0
        settings.batchBytes = 512 << 10
        #expect(settings.pieceBytes == 512 << 10)
    }

    @Test func theDefaultBurstIsATenthOfASecond() {
        // Proves that after an idle time only a tenth of a second's bytes go at full speed (a second's worth, as
        // before, spiked foreground latency at the start of every copy): the rest waits its time at the rate.
        var pacer = CopyPacer(bytesPerSecond: 10_000)
        let start = ContinuousClock.now
        #expect(pacer.spend(1000, now: start) == .zero)
        #expect(pacer.spend(1000, now: start) == .milliseconds(100))
        #expect(pacer.spend(0, now: start + .seconds(60)) == .zero)
        #expect(pacer.spend(3000, now: start + .seconds(60)) == .milliseconds(200))
    }

    @Test func aFragmentCoversItsEntriesUpToTheNextOrTheLast() {
        // Proves which entries a fragment holds: up to the next fragment's first entry, or to a closed ledger's
        // last; none when the ledger ended before it.
        var metadata = LedgerMetadata(ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, passwordHash: [],
                                      fragments: [.init(firstEntry: EntryID(0), bookies: ["a", "b", "c"].map { BookieID($0) }),
                                                  .init(firstEntry: EntryID(10), bookies: ["a", "d", "c"].map { BookieID($0) })],
                                      state: .closed, lastEntry: EntryID(14), creationTime: 0)
        #expect(ReplicationWorker.entryRange(of: 0, in: metadata) == 0...9)
        #expect(ReplicationWorker.entryRange(of: 1, in: metadata) == 10...14)
        metadata.lastEntry = EntryID(5)
        #expect(ReplicationWorker.entryRange(of: 0, in: metadata) == 0...5)
        #expect(ReplicationWorker.entryRange(of: 1, in: metadata) == nil)
    }
}
