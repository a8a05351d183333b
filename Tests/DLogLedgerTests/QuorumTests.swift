import DLogLedger
import DLogTestSupport
import DLogWire
import Testing

@Suite struct QuorumTests {
    @Test func quorumsAreChecked() {
        // Proves only E ≥ Qw ≥ Qa ≥ 1 makes a quorum configuration.
        #expect(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2) != nil)
        #expect(Quorums(ensembleSize: 3, writeQuorum: 4, ackQuorum: 2) == nil)
        #expect(Quorums(ensembleSize: 3, writeQuorum: 2, ackQuorum: 3) == nil)
        #expect(Quorums(ensembleSize: 3, writeQuorum: 2, ackQuorum: 0) == nil)
    }

    @Test func writeSetsStripeOverTheEnsemble() throws {
        // Proves entry i goes to Qw consecutive positions from i mod E, so each position stores Qw/E of the
        // entries, and with E = Qw every entry goes everywhere.
        let striped = try #require(Quorums(ensembleSize: 5, writeQuorum: 3, ackQuorum: 2))
        #expect(striped.writeSet(of: EntryID(0)) == [0, 1, 2])
        #expect(striped.writeSet(of: EntryID(3)) == [3, 4, 0])
        #expect(striped.writeSet(of: EntryID(9)) == [4, 0, 1])
        var perPosition = [Int](repeating: 0, count: 5)
        for e in 0..<1000 { for p in striped.writeSet(of: EntryID(Int64(e))) { perPosition[p] += 1 } }
        #expect(perPosition == [600, 600, 600, 600, 600])
        let full = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        #expect(Set(full.writeSet(of: EntryID(7))) == [0, 1, 2])
        #expect(full.coverage == 2 && striped.coverage == 2)
    }

    @Test func addsConfirmInOrderOnceAQuorumAcknowledged() throws {
        // Proves an entry is confirmed only with Qa acknowledgements from its write set and after every earlier
        // entry, and that acknowledgements from outside the write set or repeated ones do not count.
        var adds = PendingAdds(quorums: try #require(Quorums(ensembleSize: 5, writeQuorum: 3, ackQuorum: 2)))
        let e0 = adds.append(), e1 = adds.append(), e2 = adds.append()
        #expect(e0.entry == EntryID(0) && e1.positions == [1, 2, 3] && e2.entry == EntryID(2))
        #expect(adds.acknowledge(EntryID(1), from: 1).isEmpty)
        #expect(adds.acknowledge(EntryID(1), from: 2).isEmpty, "entry 1 waits for entry 0")
        #expect(adds.acknowledge(EntryID(0), from: 4).isEmpty, "position 4 does not store entry 0")
        #expect(adds.acknowledge(EntryID(0), from: 0).isEmpty)
        #expect(adds.acknowledge(EntryID(0), from: 0).isEmpty, "a repeated acknowledgement counts once")
        #expect(adds.lastAddConfirmed == .none)
        #expect(adds.acknowledge(EntryID(0), from: 2) == [EntryID(0), EntryID(1)])
        #expect(adds.lastAddConfirmed == EntryID(1) && adds.firstUnconfirmed == EntryID(2))
        #expect(adds.acknowledge(EntryID(0), from: 1).isEmpty, "late acknowledgements of confirmed entries are ignored")
        #expect(adds.acknowledge(EntryID(2), from: 3).isEmpty)
        #expect(adds.acknowledge(EntryID(2), from: 4) == [EntryID(2)])
        #expect(adds.isEmpty && adds.nextEntry == EntryID(3))
    }

    @Test func randomAcknowledgementOrderNeverConfirmsEarly() throws {
        // Proves, over random arrival orders, that confirmation is always a prefix of the entries and each
        // confirmed entry had Qa acknowledgements from its write set when it was confirmed.
        let seed = UInt64.random(in: 0...UInt64.max)
        print("randomAcknowledgementOrderNeverConfirmsEarly seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        let quorums = try #require(Quorums(ensembleSize: 4, writeQuorum: 3, ackQuorum: 2))
        for _ in 0..<50 {
            var adds = PendingAdds(quorums: quorums)
            var acks: [(EntryID, Int)] = []
            for _ in 0..<40 {
                let (entry, positions) = adds.append()
                acks += positions.map { (entry, $0) }
            }
            acks.shuffle(using: &rng)
            var received: [EntryID: Set<Int>] = [:]
            var confirmed: [EntryID] = []
            for (entry, position) in acks {
                received[entry, default: []].insert(position)
                for c in adds.acknowledge(entry, from: position) {
                    #expect(received[c, default: []].count >= 2, "\(c) confirmed with fewer than Qa acknowledgements")
                    confirmed.append(c)
                }
            }
            #expect(confirmed == (0..<40).map { EntryID(Int64($0)) })
        }
    }

    @Test func aReplacedBookieMustAcknowledgeAgain() throws {
        // Proves that after an ensemble change the replaced position's earlier acknowledgements of unconfirmed
        // entries no longer count, and the entries it must be sent are exactly the unconfirmed ones it stores.
        var adds = PendingAdds(quorums: try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)))
        for _ in 0..<3 { _ = adds.append() }
        #expect(adds.acknowledge(EntryID(0), from: 0) == [])
        #expect(adds.acknowledge(EntryID(0), from: 1) == [EntryID(0)])
        #expect(adds.acknowledge(EntryID(1), from: 1).isEmpty)
        #expect(adds.replace(position: 1) == [EntryID(1), EntryID(2)])
        #expect(adds.acknowledge(EntryID(1), from: 2).isEmpty, "position 1's earlier acknowledgement was dropped")
        #expect(adds.acknowledge(EntryID(1), from: 1) == [EntryID(1)], "the replacement's acknowledgement counts")
        #expect(adds.removeAll() == [EntryID(2)])
    }

    @Test func holdingFreezesConfirmationUntilReleased() throws {
        // Proves that while an ensemble change holds confirmations, acknowledgements are kept but nothing is
        // confirmed (the new fragment's first entry stays put), and releasing confirms what became ready.
        var adds = PendingAdds(quorums: try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)))
        for _ in 0..<2 { _ = adds.append() }
        adds.holding = true
        #expect(adds.acknowledge(EntryID(0), from: 0).isEmpty)
        #expect(adds.acknowledge(EntryID(0), from: 1).isEmpty)
        #expect(adds.firstUnconfirmed == EntryID(0))
        adds.holding = false
        #expect(adds.confirmReady() == [EntryID(0)])
        #expect(adds.firstUnconfirmed == EntryID(1))
    }
}
