@testable import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

@Suite struct UnderReplicationTests {
    @Test func marksOfOneBookieAndReasonFoldIntoOne() {
        // Proves the merge rule: same bookie and reason fold (fragments and entries united, the earliest time
        // kept, "all" absorbing any list); another reason or bookie is another mark; an old mark changes nothing.
        var marks = LedgerMarks()
        let b = BookieID("b-1")
        let changed1 = marks.merge(ReplicaMark(bookie: b, reason: .damaged, fragments: [0], entries: [7], since: 20))
        #expect(changed1)
        let changed2 = marks.merge(ReplicaMark(bookie: b, reason: .damaged, fragments: [10], entries: [3, 7], since: 10))
        #expect(changed2)
        #expect(marks.marks == [ReplicaMark(bookie: b, reason: .damaged, fragments: [0, 10], entries: [3, 7], since: 10)])
        let changed3 = marks.merge(ReplicaMark(bookie: b, reason: .damaged, fragments: [10], entries: [3], since: 30))
        #expect(!changed3)
        let changed4 = marks.merge(ReplicaMark(bookie: b, reason: .damaged, fragments: [], entries: nil, since: 30))
        #expect(changed4)
        #expect(marks.marks == [ReplicaMark(bookie: b, reason: .damaged, fragments: [], entries: nil, since: 10)])
        let changed5 = marks.merge(ReplicaMark(bookie: b, reason: .lost, since: 40))
        #expect(changed5)
        let changed6 = marks.merge(ReplicaMark(bookie: BookieID("b-2"), reason: .lost, since: 5))
        #expect(changed6)
        #expect(marks.marks.count == 3 && marks.oldest == 5)
        #expect(ReplicaMark(bookie: b, reason: .lost).replacesBookie && ReplicaMark(bookie: b, reason: .retiring).replacesBookie)
        #expect(!ReplicaMark(bookie: b, reason: .writtenAround).replacesBookie)
    }

    @Test func theDocumentedRecordIsTheStoredForm() throws {
        // Proves the marks example in docs/metadata.md is exactly what the cluster stores for those two marks.
        let doc = try DocExamples("metadata.md")
        let line = try #require(doc.text.split(separator: "\n").first { $0.hasPrefix(#"{"marks":"#) })
        let marks = LedgerMarks(marks: [
            ReplicaMark(bookie: BookieID("b-3"), reason: .lost, since: 1_796_360_000_000),
            ReplicaMark(bookie: BookieID("b-1"), reason: .damaged, entries: [17], since: 1_796_360_100_000),
        ])
        #expect(String(decoding: Cluster.encode(marks), as: UTF8.self) == String(line))
        #expect(try JSONDecoder().decode(LedgerMarks.self, from: Data(line.utf8)) == marks)
    }

    @Test(arguments: Backend.allCases) func concurrentMarksAreNeverLost(_ backend: Backend) async throws {
        // Proves marking is a compare-and-set that loses nothing: 12 concurrent markers (as the auditor, writers
        // and scrub may be) each add their own mark to one ledger, and all 12 are there; then unmarking some
        // while others are added keeps the others.
        try await withStore(backend) { _, store in
        let cluster = Cluster(store: store)
        let ledger = LedgerID(42)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<12 {
                group.addTask { try await cluster.mark(ledger, [ReplicaMark(bookie: BookieID("b-\(i)"), reason: .lost)]) }
            }
            try await group.waitForAll()
        }
        #expect(try await cluster.marks(of: ledger)?.0.marks.count == 12)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await cluster.unmark(ledger) { Int($0.bookie.rawValue.dropFirst(2))! < 6 } }
            for i in 12..<16 {
                group.addTask { try await cluster.mark(ledger, [ReplicaMark(bookie: BookieID("b-\(i)"), reason: .missing)]) }
            }
            try await group.waitForAll()
        }
        let left = try #require(try await cluster.marks(of: ledger)?.0.marks).map(\.bookie.rawValue).sorted()
        #expect(left == (6..<16).map { "b-\($0)" }.sorted())
        try await cluster.unmark(ledger) { _ in true }
        #expect(try await cluster.marks(of: ledger) == nil, "the record goes with its last mark")
        }
    }

    @Test(arguments: Backend.allCases) func aBookieThatLeftIsNeverDeclaredLost(_ backend: Backend) async throws {
        // Proves the declaration holds only while the bookie has a cookie: an auditor that read the cookies before a
        // decommission finished (which deletes the cookie and the lost record together) used to write the lost
        // record again after it, and `recovery status` showed the decommissioned bookie as lost.
        try await withStore(backend) { _, store in
        let cluster = Cluster(store: store)
        let here = BookieID("b-here"), gone = BookieID("b-gone")
        _ = try await store.commit(Transaction(operations: [.put(key: ClusterKeys.cookie(here), value: Array("{}".utf8), lease: nil)]))
        #expect(try await cluster.declareLost(here))
        #expect(!(try await cluster.declareLost(gone)))
        #expect(Set(try await cluster.lostBookies().keys) == [here])
        }
    }
}
