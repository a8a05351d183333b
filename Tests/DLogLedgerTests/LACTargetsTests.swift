@testable import DLogLedger
import DLogWire
import Testing

@Suite struct LACTargetsTests {
    private func targets(_ told: Int64, _ lac: Int64, _ q: Quorums, live: [Int]? = nil) -> Set<Int> {
        LACTargets.positions(from: EntryID(told), to: EntryID(lac), quorums: q, live: live ?? Array(0..<q.ensembleSize))
    }

    @Test func aNewLACGoesToTheBookieEachReaderThatItWakesPollsFirst() throws {
        // Proves the bookies told are exactly the first of the write set of entry x + 2 for every LAC x a reader
        // may hold between the last one told and the new one, which is the bookie that reader polls first.
        let q = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        #expect(targets(4, 5, q) == [q.writeSet(of: EntryID(6))[0]])
        #expect(targets(4, 5, q) == [0])
        #expect(targets(-1, 0, q) == [1], "the first LAC: a reader with none polls the write set of entry 1")
        #expect(targets(4, 6, q) == [0, 1])
        #expect(targets(4, 7, q) == [0, 1, 2], "a burst as long as the ensemble reaches every bookie")
        #expect(targets(4, 40, q) == [0, 1, 2])
        for told in Int64(-1)..<20 {
            for lac in (told + 1)..<(told + 3) {
                let readers = (told...(lac - 1)).map { q.writeSet(of: EntryID($0 + 2))[0] }
                #expect(targets(told, lac, q) == Set(readers), "\(told) → \(lac)")
            }
        }
    }

    @Test func everyLiveBookieIsToldWhereTheReasoningDoesNotHold() throws {
        // Proves striped ensembles (an add reaches only its write set, so the others may not know the older LAC)
        // and ensembles written around (the reader's first choice may be missing) tell every live bookie, and that
        // nothing is told when the LAC did not move.
        let striped = try #require(Quorums(ensembleSize: 5, writeQuorum: 3, ackQuorum: 2))
        #expect(targets(4, 5, striped) == [0, 1, 2, 3, 4])
        let q = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        #expect(targets(4, 5, q, live: [1, 2]) == [1, 2])
        #expect(targets(5, 5, q).isEmpty)
    }
}
