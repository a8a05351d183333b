import DLogLedger
import DLogWire
import Testing

@Suite struct RecoveryRulesTests {
    @Test func fencingProceedsWithoutTheSlowestBookie() throws {
        // Proves recovery may go on once every write set has Qw − Qa + 1 fenced bookies, without waiting for a
        // silent one, and takes the highest LAC any fenced bookie saw.
        var fence = FenceProgress(quorums: try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)))
        #expect(fence.decision == .waiting)
        fence.record(.fenced(lastAddConfirmed: EntryID(7)), from: 0)
        #expect(fence.decision == .waiting)
        fence.record(.fenced(lastAddConfirmed: EntryID(9)), from: 2)
        #expect(fence.decision == .fenced(lastAddConfirmed: EntryID(9)), "position 1 is silent and not needed")
    }

    @Test func stripedFencingCoversEveryWriteSet() throws {
        // Proves that with striping two fenced bookies are not enough when some write set has fewer than
        // Qw − Qa + 1 of them fenced.
        var fence = FenceProgress(quorums: try #require(Quorums(ensembleSize: 5, writeQuorum: 3, ackQuorum: 2)))
        fence.record(.fenced(lastAddConfirmed: .none), from: 0)
        fence.record(.fenced(lastAddConfirmed: .none), from: 1)
        // Write set [2, 3, 4] has none fenced: the old writer could still get 2 acks there.
        #expect(fence.decision == .waiting)
        fence.record(.fenced(lastAddConfirmed: EntryID(3)), from: 3)
        #expect(fence.decision == .waiting, "write set [3, 4, 0] has 2, but [2, 3, 4] still has only 1")
        fence.record(.fenced(lastAddConfirmed: EntryID(4)), from: 4)
        #expect(fence.decision == .fenced(lastAddConfirmed: EntryID(4)))
    }

    @Test func fencingThatCannotSucceedSaysWhy() throws {
        // Proves that when too many bookies of one write set failed, fencing is reported impossible, naming them.
        var fence = FenceProgress(quorums: try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)))
        fence.record(.failed("connection refused"), from: 0)
        #expect(fence.decision == .waiting)
        fence.record(.failed("timed out"), from: 1)
        guard case .impossible(let why) = fence.decision else {
            Issue.record("two failed bookies of three with Qa=2 must make fencing impossible")
            return
        }
        #expect(why.contains("connection refused") && why.contains("timed out"))
    }

    @Test func entryRecoveryFindsEndsOrRefusesToGuess() throws {
        // Proves an entry found on any replica is recovered, one missing on Qw − Qa + 1 replicas ends the ledger
        // (without waiting for the rest), and errors that leave it open stop recovery instead of guessing.
        let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        var found = EntryRecovery(quorums: quorums, entry: EntryID(10))
        found.record(.noEntry, from: 1)
        #expect(found.decision == .waiting)
        found.record(.found([1, 2, 3]), from: 2)
        #expect(found.decision == .recovered([1, 2, 3]))

        var missing = EntryRecovery(quorums: quorums, entry: EntryID(11))
        missing.record(.noEntry, from: 2)
        missing.record(.noEntry, from: 0)
        #expect(missing.decision == .missing, "two of three lack it: it never had an ack quorum")

        var unclear = EntryRecovery(quorums: quorums, entry: EntryID(12))
        unclear.record(.noEntry, from: 0)
        unclear.record(.failed("checksum mismatch"), from: 1)
        #expect(unclear.decision == .waiting)
        unclear.record(.failed("timed out"), from: 2)
        guard case .undecidable(let why) = unclear.decision else {
            Issue.record("one missing and two failed replicas must not decide")
            return
        }
        #expect(why.contains("checksum mismatch"))
    }
}
