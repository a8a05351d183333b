import DistributedLog
import DLogClusterSupport
import DLogWire
import Testing

/// Truncation, retention and subscriptions: what is kept, what readers skip, and where consumers resume.
@Suite struct TruncationTests {
    @Test func truncationIsSkippedByReadersAndRetentionDeletesIt() async throws {
        // Proves truncating before a record's DLSN makes readers from the start begin exactly there (whole
        // segments and the part of one are skipped), retention then deletes the truncated segments with their
        // ledgers, and age-based retention deletes every completed segment but the newest.
        try await withNamespace({ $0.segmentBytesMax = 1024; $0.retentionAge = nil }) { namespace, fixture in
            let writer = try await namespace.openWriter("trunc")
            var dlsns: [DLSN] = []
            for n in 0..<80 { dlsns.append(try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n)))) }
            let cut = dlsns[40]
            #expect(cut.entry > 0 || cut.slot > 0 || cut.segment > 1)
            try await writer.truncate(before: cut)
            let segments = try await namespace.segments("trunc").map(\.segment)
            #expect(segments.filter { $0.sequence < cut.segment }.allSatisfy { $0.truncation == .truncated })
            let fromStart = try await read(try await namespace.openReader("trunc"), count: 40)
            #expect(fromStart.map(\.txid) == (40..<80).map { Int64($0) }, "readers skip truncated data")
            #expect(fromStart.first?.sequenceID == 40, "sequence ids still count the truncated records")

            try await writer.applyRetention()
            let kept = try await namespace.segments("trunc").map(\.segment)
            #expect(kept.allSatisfy { $0.truncation != .truncated } && kept.first!.sequence == cut.segment)
            for gone in segments where gone.truncation == .truncated {
                #expect(try await fixture.cluster.ledger(gone.ledger) == nil, "segment \(gone.sequence)'s ledger deleted")
            }
            #expect(try await read(try await namespace.openReader("trunc"), count: 40).map(\.txid) == (40..<80).map { Int64($0) })
            try await writer.close()
        }
        try await withNamespace({ $0.segmentBytesMax = 1024; $0.retentionAge = .zero }) { namespace, _ in
            let writer = try await namespace.openWriter("aged")
            for n in 0..<60 { _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) }
            try await writer.close()
            // Retention also runs after every roll, so old segments went while the writer wrote.
            let created = try await namespace.segments("aged").last!.segment.sequence
            let next = try await namespace.openWriter("aged")
            try await next.applyRetention()
            let after = try await namespace.segments("aged")
            #expect(created >= 3 && after.count == 1 && after[0].segment.sequence == created, "\(created) segments, \(after.count) kept")
            try await next.close()
        }
    }

    @Test func subscriptionsMoveOnlyForwardAndReadersResumeAfterThem() async throws {
        try await withNamespace { namespace, _ in
            let writer = try await namespace.openWriter("subs")
            var dlsns: [DLSN] = []
            for n in 0..<20 { dlsns.append(try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n)))) }
            let subscriptions = try namespace.subscriptions("subs")
            #expect(try await subscriptions.position("billing") == nil)
            #expect(try await subscriptions.commit("billing", dlsns[9]) == dlsns[9])
            #expect(try await subscriptions.commit("billing", dlsns[3]) == dlsns[9], "a position never moves back")
            try await subscriptions.commit("audit", dlsns[0])
            #expect(try await subscriptions.all() == ["billing": dlsns[9], "audit": dlsns[0]])
            await #expect(throws: LogError.self) { try await subscriptions.commit("a/b", dlsns[0]) }

            let subscriber = try await subscriptions.openReader("billing", exclusive: true)
            let resumed = try await read(subscriber.reader, count: 10)
            #expect(resumed.map(\.txid) == (10..<20).map { Int64($0) }, "resumes after the committed record")
            try await subscriber.commit(resumed.last!.dlsn)
            do {
                _ = try await subscriptions.openReader("billing", exclusive: true)
                Issue.record("two exclusive readers of one subscription")
            } catch LogError.busy(_, let why) {
                #expect(why.contains("already has an exclusive reader"))
            }
            await subscriber.close()
            let next = try await subscriptions.openReader("billing", exclusive: true)
            #expect(try await next.reader.readBulk(max: 5, wait: .milliseconds(200)).isEmpty)
            await next.close()
            try await subscriptions.delete("audit")
            #expect(try await subscriptions.all().keys.sorted() == ["billing"])
            try await writer.close()
        }
    }
}
