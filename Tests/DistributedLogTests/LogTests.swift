import DistributedLog
import DLogClusterSupport
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Testing

/// Deterministic record payloads, so readers check bytes without keeping them.
func recordPayload(_ n: Int) -> [UInt8] {
    Array("record-\(n)-".utf8) + (0..<(n % 29)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ n) }
}

/// Runs `body` with a namespace over an in-process cluster of 3 bookies.
func withNamespace(_ configure: (inout LogOptions) -> Void = { _ in },
                   _ body: (Namespace, LedgerFixture) async throws -> Void) async throws {
    try await withLedgerCluster(bookies: 3) { fixture in
        var options = LogOptions()
        options.readPollTimeout = .milliseconds(300)
        configure(&options)
        try await body(Namespace(pool: fixture.pool, options: options), fixture)
    }
}

/// Reads `count` records (bounded in time: a reader that stops delivering fails the test instead of hanging).
/// Reads `count` records; fails when 30 s pass with none arriving. The bound is on a stall, not on the whole read:
/// a reader tailing a writer waits as long as the writer takes, which under a full `make test` (every suite at
/// once on two cores and one disk) was up to a minute for 200 acknowledged writes one after another.
func read(_ reader: LogReader, count: Int) async throws -> [LogRecordWithDLSN] {
    var records: [LogRecordWithDLSN] = []
    var deadline = ContinuousClock.now + .seconds(30)
    while records.count < count {
        guard ContinuousClock.now < deadline else {
            throw TimedOut(what: "\(count) records (got \(records.count), none in the last 30 s)", seconds: 30)
        }
        let more = try await reader.readBulk(max: count - records.count, wait: .milliseconds(500))
        if !more.isEmpty { deadline = ContinuousClock.now + .seconds(30) }
        records += more
    }
    return records
}

@Suite struct LogTests {
    @Test func namespaceCreatesListsAndRefusesBadNames() async throws {
        try await withNamespace { namespace, _ in
            try await namespace.createLog("orders/eu")
            try await namespace.createLog("orders/us")
            try await namespace.createLog("audit")
            await #expect(throws: LogError.logExists("audit")) { try await namespace.createLog("audit") }
            #expect(try await namespace.listLogs() == ["audit", "orders/eu", "orders/us"])
            #expect(try await namespace.listLogs(prefix: "orders/") == ["orders/eu", "orders/us"])
            let audit = try await namespace.logExists("audit"), nope = try await namespace.logExists("nope")
            #expect(audit && !nope)
            await #expect(throws: LogError.self) { try await namespace.createLog("bad name") }
            await #expect(throws: LogError.noSuchLog("nope")) { _ = try await namespace.openReader("nope") }
            await #expect(throws: LogError.noSuchLog("nope")) { try await namespace.deleteLog("nope") }
        }
    }

    @Test func recordsWrittenAreReadBackInOrderWithTheirPositions() async throws {
        // Proves writes (single and bulk, many in flight) return increasing DLSNs once durable, and a reader gets
        // every record once, in order, with its txid, payload, DLSN and sequence id, then waits (caught up).
        try await withNamespace { namespace, _ in
            let writer = try await namespace.openWriter("events")
            var dlsns: [(Int, DLSN)] = []
            for n in 0..<100 { dlsns.append((n, try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))))) }
            let bulk = try await writer.writeBulk((100..<140).map { LogRecord(txid: Int64($0), payload: recordPayload($0)) })
            let all = dlsns.map(\.1) + bulk
            #expect(all == all.sorted() && Set(all).count == 140, "DLSNs increase")
            try await writer.close()

            let reader = try await namespace.openReader("events")
            let records = try await read(reader, count: 140)
            #expect(records.map(\.txid) == (0..<140).map { Int64($0) })
            #expect(records.map(\.payload) == (0..<140).map { recordPayload($0) })
            #expect(records.map(\.dlsn) == all)
            #expect(records.map(\.sequenceID) == (0..<140).map { Int64($0) })
            #expect(try await reader.readBulk(max: 10, wait: .milliseconds(200)).isEmpty, "caught up: nothing more")
        }
    }

    @Test func compressedEntriesReadBack() async throws {
        try await withNamespace({ $0.compression = .lz4 }) { namespace, _ in
            let writer = try await namespace.openWriter("packed")
            let records = (0..<60).map { LogRecord(txid: Int64($0), payload: Array(repeating: UInt8($0 % 5), count: 300)) }
            _ = try await writer.writeBulk(records)
            try await writer.close()
            let read = try await read(try await namespace.openReader("packed"), count: 60)
            #expect(read.map(\.payload) == records.map(\.payload))
        }
    }

    @Test func txidsMustNotDecrease() async throws {
        try await withNamespace { namespace, _ in
            let writer = try await namespace.openWriter("t")
            _ = try await writer.write(LogRecord(txid: 10, payload: [1]))
            _ = try await writer.write(LogRecord(txid: 10, payload: [2]))
            await #expect(throws: LogError.txidOutOfOrder("t", txid: 9, last: 10)) {
                _ = try await writer.write(LogRecord(txid: 9, payload: [3]))
            }
            await #expect(throws: LogError.txidOutOfOrder("t", txid: -1, last: 10)) {
                _ = try await writer.write(LogRecord(txid: -1, payload: [3]))
            }
            // A refused record leaves the writer usable.
            _ = try await writer.write(LogRecord(txid: 11, payload: [4]))
            await #expect(throws: LogError.recordTooLarge("t", bytes: LogRecord.payloadBytesMax + 1)) {
                _ = try await writer.write(LogRecord(txid: 12, payload: [UInt8](repeating: 0, count: LogRecord.payloadBytesMax + 1)))
            }
            try await writer.close()
            // The floor survives the writer: a new one refuses a lower txid too.
            let next = try await namespace.openWriter("t")
            await #expect(throws: LogError.txidOutOfOrder("t", txid: 5, last: 11)) {
                _ = try await next.write(LogRecord(txid: 5, payload: [5]))
            }
            try await next.close()
        }
    }

    @Test func segmentsRollBySizeAndReadersCrossThemAndPositionByTxidOrDLSN() async throws {
        // Proves a writer rolls to new segments by size, a reader from the start crosses every boundary, and a
        // reader positioned by txid or by DLSN starts at the right record, including at a segment's first record.
        try await withNamespace({ $0.segmentBytesMax = 2048 }) { namespace, _ in
            let writer = try await namespace.openWriter("rolled")
            var dlsns: [DLSN] = []
            for n in 0..<120 { dlsns.append(try await writer.write(LogRecord(txid: Int64(n * 10), payload: recordPayload(n)))) }
            try await writer.close()
            let segments = try await namespace.segments("rolled").map(\.segment)
            #expect(segments.count >= 4 && segments.allSatisfy { $0.state == .completed }, "\(segments.count) segments")
            #expect(segments.map(\.sequence) == Array(1...Int64(segments.count)))
            #expect(segments.last!.startSequenceID + segments.last!.recordCount == 120)

            let all = try await read(try await namespace.openReader("rolled"), count: 120)
            #expect(all.map(\.dlsn) == dlsns && all.map(\.sequenceID) == (0..<120).map { Int64($0) })

            // The first record of the third segment, by txid and by DLSN, and a txid between records.
            let third = try #require(all.firstIndex { $0.dlsn.segment == segments[2].sequence })
            let byTxid = try await read(try await namespace.openReader("rolled", from: .txid(all[third].txid)), count: 1)
            #expect(byTxid[0].dlsn == all[third].dlsn)
            let byDLSN = try await read(try await namespace.openReader("rolled", from: .dlsn(DLSN(segment: segments[2].sequence, entry: 0, slot: 0))), count: 1)
            #expect(byDLSN[0].dlsn == all[third].dlsn)
            let between = try await read(try await namespace.openReader("rolled", from: .txid(all[third].txid - 5)), count: 1)
            #expect(between[0].txid == all[third].txid)
            let fromMiddle = try await read(try await namespace.openReader("rolled", from: .dlsn(all[50].dlsn)), count: 70)
            #expect(fromMiddle.map(\.txid) == all[50...].map(\.txid))
        }
    }

    @Test func aTailingReaderGetsEveryRecordOnceInOrderAsItIsWritten() async throws {
        try await withNamespace({ $0.segmentBytesMax = 4096 }) { namespace, _ in
            try await namespace.createLog("tail")
            let reader = try await namespace.openReader("tail")
            let consumer = Task { try await read(reader, count: 200) }
            let writer = try await namespace.openWriter("tail")
            for burst in 0..<10 {
                for n in burst * 20..<(burst + 1) * 20 { _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) }
                try await Task.sleep(for: .milliseconds(Int64(burst % 3) * 30))
            }
            let records = try await consumer.value
            #expect(records.map(\.txid) == (0..<200).map { Int64($0) })
            #expect(records.map(\.payload) == (0..<200).map { recordPayload($0) })
            try await writer.close()
        }
    }

    @Test func oneOwnerAtATimeAndATakeoverFencesTheOldWriter() async throws {
        // Proves a second writer is refused while the first holds the log (a clear error naming the owner); once
        // the first's lease is gone, a new writer recovers its in-progress segment (every record it confirmed is
        // kept), and the old writer's later writes fail with 'ownership lost'.
        try await withNamespace({ $0.ownershipLeaseSeconds = 60 }) { namespace, fixture in
            let first = try await namespace.openWriter("owned", owner: "first")
            var confirmed: [DLSN] = []
            for n in 0..<30 { confirmed.append(try await first.write(LogRecord(txid: Int64(n), payload: recordPayload(n)))) }
            await #expect(throws: LogError.ownedByOther("owned", owner: "first")) {
                _ = try await namespace.openWriter("owned", owner: "second")
            }
            // The first writer's process "dies": its lease is gone (as at expiry), its objects linger.
            for lease in try await fixture.store.list(prefix: LogKeys.lock("owned")).items.compactMap(\.lease) {
                try await fixture.store.revoke(lease)
            }
            let second = try await namespace.openWriter("owned", owner: "second")
            let recovered = try await namespace.segments("owned").map(\.segment)
            #expect(recovered.count == 1 && recovered[0].state == .completed && recovered[0].lastDLSN == confirmed.last)
            let later = try await second.write(LogRecord(txid: 30, payload: recordPayload(30)))
            #expect(later.segment == 2 && later > confirmed.last!)
            do {
                _ = try await first.write(LogRecord(txid: 31, payload: recordPayload(31)))
                Issue.record("the old writer's write was acknowledged after a takeover")
            } catch let error as LogError {
                #expect("\(error)".contains("ownership lost"), "\(error)")
            }
            try await second.close()
            let all = try await read(try await namespace.openReader("owned"), count: 31)
            #expect(all.map(\.txid) == (0...30).map { Int64($0) })
        }
    }

    @Test func endOfStreamSealsTheLog() async throws {
        try await withNamespace { namespace, _ in
            let writer = try await namespace.openWriter("sealed")
            for n in 0..<5 { _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) }
            try await writer.markEndOfStream()
            await #expect(throws: LogError.endOfStream("sealed")) { _ = try await namespace.openWriter("sealed") }
            let reader = try await namespace.openReader("sealed")
            #expect(try await read(reader, count: 5).map(\.txid) == [0, 1, 2, 3, 4])
            await #expect(throws: LogError.endOfStream("sealed")) { _ = try await reader.readNext() }
        }
    }

    @Test func deleteRemovesTheLogAndItsLedgers() async throws {
        try await withNamespace({ $0.segmentBytesMax = 1024 }) { namespace, fixture in
            let writer = try await namespace.openWriter("gone")
            for n in 0..<40 { _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) }
            do {
                try await namespace.deleteLog("gone")
                Issue.record("a log was deleted while its writer held it")
            } catch let error as LogError {
                guard case .ownedByOther("gone", _) = error else { Issue.record("\(error)"); return }
            }
            try await writer.close()
            let ledgers = try await namespace.segments("gone").map(\.segment.ledger)
            #expect(ledgers.count >= 2)
            try await namespace.deleteLog("gone")
            #expect(!(try await namespace.logExists("gone")))
            #expect(try await fixture.store.list(prefix: LogKeys.all("gone")).items.isEmpty)
            for ledger in ledgers { #expect(try await fixture.cluster.ledger(ledger) == nil, "\(ledger) deleted") }
        }
    }

    @Test func aWriterWithoutItsLockCannotStartASegment() async throws {
        // Proves ownership is part of the compare-and-set: a writer whose lease is gone, sitting between
        // segments (nothing for the new owner to fence), cannot start a segment after the new owner took over.
        try await withNamespace({ $0.ownershipLeaseSeconds = 60 }) { namespace, fixture in
            let old = try await namespace.openWriter("idle", owner: "old")
            for lease in try await fixture.store.list(prefix: LogKeys.lock("idle")).items.compactMap(\.lease) {
                try await fixture.store.revoke(lease)
            }
            let new = try await namespace.openWriter("idle", owner: "new")
            do {
                _ = try await old.write(LogRecord(txid: 1, payload: [1]))
                Issue.record("a writer without its lock started a segment")
            } catch let error as LogError {
                #expect("\(error)".contains("ownership lost"), "\(error)")
            }
            #expect(try await new.write(LogRecord(txid: 2, payload: [2])).segment == 1)
            try await new.close()
        }
    }

    @Test func sealingRefusesLaterWritesAndReadersEndThere() async throws {
        // Proves writes racing markEndOfStream are either acknowledged and read before the end, or refused with
        // 'sealed'; a reader positioned past the marker ends too instead of waiting forever; readBulk without a
        // wait returns what is written.
        try await withNamespace { namespace, _ in
            let writer = try await namespace.openWriter("race")
            let writes = (0..<40).map { n in Task { try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) } }
            let marker = try await writer.markEndOfStream()
            var acknowledged: [DLSN] = []
            for write in writes {
                switch await write.result {
                case .success(let dlsn): acknowledged.append(dlsn)
                case .failure(let error): #expect(error as? LogError == .endOfStream("race") || "\(error)".contains("sealed"), "\(error)")
                }
            }
            #expect(acknowledged.allSatisfy { $0 < marker })
            let reader = try await namespace.openReader("race")
            var seen: [DLSN] = []
            while true {
                do {
                    let batch = try await reader.readBulk(max: 100)
                    seen += batch.map(\.dlsn)
                    if batch.isEmpty { try await Task.sleep(for: .milliseconds(10)) }
                } catch LogError.endOfStream {
                    break
                }
            }
            #expect(seen == acknowledged.sorted())
            let past = try await namespace.openReader("race", from: .dlsn(DLSN(segment: marker.segment, entry: marker.entry + 5, slot: 0)))
            await #expect(throws: LogError.endOfStream("race")) { _ = try await past.readNext() }
        }
    }

    @Test func aReaderPositionedByTxidAheadOfTheWriterWaitsForThatTxid() async throws {
        try await withNamespace { namespace, _ in
            let writer = try await namespace.openWriter("ahead")
            for n in 0..<10 { _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) }
            let reader = try await namespace.openReader("ahead", from: .txid(100))
            let consumer = Task { try await read(reader, count: 3) }
            try await Task.sleep(for: .milliseconds(100))
            for n in 10..<110 { _ = try await writer.write(LogRecord(txid: Int64(n), payload: recordPayload(n))) }
            #expect(try await consumer.value.map(\.txid) == [100, 101, 102])
            try await writer.close()
        }
    }
}
