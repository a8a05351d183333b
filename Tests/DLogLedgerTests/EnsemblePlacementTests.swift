import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Testing

@Suite struct EnsemblePlacementTests {
    static func bookie(_ id: String, rack: String, readOnly: Bool = false) -> BookieRegistration {
        BookieRegistration(id: BookieID(id), address: id, rack: rack, readOnly: readOnly, disks: [], startedAt: 0)
    }

    @Test func randomPlacementUsesOnlyWritableDistinctBookies() throws {
        // Proves an ensemble holds E distinct writable bookies, never read-only or excluded ones, and a
        // shortage names what is missing.
        var rng = SeededGenerator(seed: 1)
        let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        let registered = [Self.bookie("a", rack: "r1"), Self.bookie("b", rack: "r1"), Self.bookie("c", rack: "r2"),
                          Self.bookie("d", rack: "r2", readOnly: true), Self.bookie("e", rack: "r3")]
        let placement = EnsemblePlacement(policy: .random)
        for _ in 0..<50 {
            let choice = try placement.ensemble(for: quorums, from: registered, excluding: [BookieID("e")], using: &rng)
            #expect(Set(choice.bookies) == [BookieID("a"), BookieID("b"), BookieID("c")])
        }
        do {
            _ = try placement.ensemble(for: quorums, from: registered, excluding: [BookieID("a"), BookieID("e")], using: &rng)
            Issue.record("an ensemble of 3 was made from 2 writable bookies")
        } catch {
            #expect(error.message.contains("need 3 writable") && error.message.contains("read-only: d"))
        }
    }

    @Test func rackAwarePlacementSpreadsWriteSets() throws {
        // Proves rack-aware placement puts neighbouring positions (write sets) on different racks when the
        // racks allow, and warns when they do not.
        var rng = SeededGenerator(seed: 2)
        let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2))
        let registered = (0..<9).map { Self.bookie("b\($0)", rack: "/zone/r\($0 % 3)") }
        let racks = Dictionary(uniqueKeysWithValues: registered.map { ($0.id, $0.rack) })
        let placement = EnsemblePlacement(policy: .rackAware)
        for _ in 0..<50 {
            let choice = try placement.ensemble(for: quorums, from: registered, using: &rng)
            #expect(Set(choice.bookies.map { racks[$0]! }).count == 3 && choice.warning == nil)
        }
        let oneRack = (0..<4).map { Self.bookie("s\($0)", rack: "/zone/only") }
        let degraded = try placement.ensemble(for: quorums, from: oneRack, using: &rng)
        #expect(degraded.bookies.count == 3)
        #expect(degraded.warning?.contains("1 rack") == true)

        // Three racks, but uneven: with 3 of 5 bookies on one rack, two of them are always neighbours.
        let striped = try #require(Quorums(ensembleSize: 5, writeQuorum: 2, ackQuorum: 2))
        let uneven = ["/a", "/a", "/a", "/b", "/c"].enumerated().map { Self.bookie("u\($0.offset)", rack: $0.element) }
        let crowded = try placement.ensemble(for: striped, from: uneven, using: &rng)
        #expect(crowded.warning?.contains("too uneven") == true, "\(String(describing: crowded.warning))")
        // Racks of 2, 2 and 1 can be dealt so that no write set repeats a rack.
        let even = ["/a", "/a", "/b", "/b", "/c"].enumerated().map { Self.bookie("v\($0.offset)", rack: $0.element) }
        for _ in 0..<20 { #expect(try placement.ensemble(for: striped, from: even, using: &rng).warning == nil) }
    }

    @Test func replacementAvoidsTheEnsembleAndItsNeighboursRacks() throws {
        // Proves a replacement is a writable bookie outside the ensemble and the excluded ones, on a rack its
        // write-set neighbours do not use when one exists.
        var rng = SeededGenerator(seed: 3)
        let quorums = try #require(Quorums(ensembleSize: 3, writeQuorum: 2, ackQuorum: 2))
        let registered = [Self.bookie("a", rack: "r1"), Self.bookie("b", rack: "r2"), Self.bookie("c", rack: "r3"),
                          Self.bookie("d", rack: "r2"), Self.bookie("e", rack: "r4")]
        let ensemble = [BookieID("a"), BookieID("b"), BookieID("c")]
        let placement = EnsemblePlacement(policy: .rackAware)
        for _ in 0..<30 {
            // Position 1's neighbours are a (r1) and c (r3); d is on r2, e on r4: both are fine, b is failing.
            let choice = try placement.replacement(for: 1, in: ensemble, quorums: quorums, from: registered,
                                                   excluding: [BookieID("b")], using: &rng)
            #expect(choice.bookies.count == 1 && [BookieID("d"), BookieID("e")].contains(choice.bookies[0]))
            // Position 0's neighbours are b (r2) and c (r3): d shares r2, so only e avoids them.
            let zero = try placement.replacement(for: 0, in: ensemble, quorums: quorums, from: registered,
                                                 excluding: [BookieID("a")], using: &rng)
            #expect(zero.bookies == [BookieID("e")] && zero.warning == nil)
        }
        #expect(throws: EnsemblePlacement.Failure.self) {
            _ = try placement.replacement(for: 0, in: ensemble, quorums: quorums, from: registered,
                                          excluding: [BookieID("d"), BookieID("e")], using: &rng)
        }
    }
}
