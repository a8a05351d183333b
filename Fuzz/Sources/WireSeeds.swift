import DLogMetadata
import DLogWire
import NIOCore

/// Seed streams written by the real encoders: one frame per message kind, grouped a few to a stream.
enum SeedFrames {
    static func stream(_ writers: [(inout ByteBuffer) -> Void]) -> [UInt8] {
        var buffer = ByteBuffer()
        for write in writers { write(&buffer) }
        return Array(buffer.readableBytesView)
    }

    static let entry = EntryCodec.encode(EntryHeader(ledger: LedgerID(7), entry: EntryID(3), lastAddConfirmed: EntryID(2),
                                                     ledgerLength: 42), payload: Array("hello".utf8))
}

enum BookieSeeds {
    static let key = MasterKey(password: "fuzz")

    @Sendable static func all() -> [[UInt8]] {
        let requests: [BookieRequest] = [
            .add(masterKey: key, entry: SeedFrames.entry, recovery: false),
            .read(ledger: LedgerID(7), entry: EntryID(3), fenceWith: key),
            .readLAC(ledger: LedgerID(7), longPoll: .init(previous: EntryID(2), timeoutMilliseconds: 500, withEntry: true)),
            .writeLAC(ledger: LedgerID(7), masterKey: key, lac: EntryID(3)),
            .deleteLedger(ledger: LedgerID(7)), .getInfo,
            .listEntries(ledger: LedgerID(7), from: EntryID(0), rangesMax: 4),
            .ledgerKey(ledger: LedgerID(7)),
            .readRange(ledger: LedgerID(7), first: EntryID(0), last: EntryID(9), maxBytes: 1 << 16),
            .addBatch(masterKey: key, entries: [SeedFrames.entry, SeedFrames.entry], recovery: true),
        ]
        let responses: [(BookieOp, BookieResponse)] = [
            (.add, .added(ledger: LedgerID(7), entry: EntryID(3))), (.read, .entry(SeedFrames.entry)),
            (.readLAC, .lacAndEntry(lac: EntryID(3), lastEntry: EntryID(3), entry: SeedFrames.entry)),
            (.getInfo, .info(json: #"{"state":"rw"}"#)),
            (.listEntries, .entries(ranges: [EntryRange(EntryID(0), EntryID(4)), EntryRange(EntryID(6), EntryID(6))], next: EntryID(9))),
            (.ledgerKey, .masterKey(key)), (.readRange, .entryBatch(entries: [SeedFrames.entry], next: nil)),
            (.addBatch, .addedBatch(count: 2)), (.read, .failed(.noEntry, message: "no entry 7/3")),
        ]
        // Pairs, so that the stream splitting sees frame boundaries.
        var seeds: [[UInt8]] = []
        for (i, request) in requests.enumerated() {
            let (op, response) = responses[i % responses.count]
            seeds.append(SeedFrames.stream([{ request.encode(requestID: UInt64(i), into: &$0) },
                                            { response.encode(op: op, requestID: UInt64(i), into: &$0) }]))
        }
        return seeds
    }
}

enum ProxySeeds {
    @Sendable static func all() -> [[UInt8]] {
        let dlsn = DLSN(segment: 1, entry: 2, slot: 3)
        let requests: [ProxyRequest] = [
            .write(stream: "orders", ProxyRecord(txid: 5, payload: Array("abc".utf8))),
            .writeBulk(stream: "orders", [ProxyRecord(payload: [1, 2]), ProxyRecord(txid: 9, payload: [])]),
            .truncate(stream: "orders", before: dlsn), .create(stream: "s"), .getOwner(stream: "s"), .heartbeat(stream: "s"),
        ]
        let replies: [(ProxyOp, ProxyReply)] = [
            (.write, .written(dlsn)), (.writeBulk, .writtenBulk([dlsn, dlsn])), (.truncate, .done),
            (.create, .done), (.getOwner, .owner("10.0.0.1:4181")), (.heartbeat, .owner(nil)),
        ]
        return zip(requests, replies).enumerated().map { i, pair in
            SeedFrames.stream([{ pair.0.encode(requestID: UInt64(i), into: &$0) },
                               { pair.1.1.encode(op: pair.1.0, requestID: UInt64(i), into: &$0) }])
        } + [SeedFrames.stream([{ ProxyFailure(.redirect, "10.0.0.2:4181").encode(op: ProxyOp.write.rawValue, requestID: 9, into: &$0) }])]
    }
}

enum MetadataSeeds {
    @Sendable static func all() -> [[UInt8]] {
        var transaction = Transaction()
        transaction.checks.append(.init(key: "/ledgers/7", version: Version(3)))
        transaction.operations = [.put(key: "/ledgers/7", value: [1, 2, 3], lease: LeaseID(11)), .delete(key: "/x")]
        let requests: [MetadataRequest] = [
            .range(KeyRange.prefix("/ledgers/"), limit: 100), .commit(transaction), .watch(.key("/a"), from: Revision(4)),
            .cancelWatch(3), .leaseGrant(ttlSeconds: 10), .leaseKeepAlive(LeaseID(11)), .stats,
        ]
        let item = KeyValue(key: "/ledgers/7", value: [9, 9], version: Version(1), createRevision: Revision(2), lease: LeaseID(11))
        let replies: [(MetadataOp, MetadataReply)] = [
            (.range, .range(RangePage(items: [item], more: true, revision: Revision(5)))), (.commit, .committed(Revision(6))),
            (.watch, .events([WatchEvent(kind: .put, key: "/a", value: [1], revision: Revision(7))])),
            (.cancelWatch, .done), (.leaseGrant, .lease(Lease(id: LeaseID(11), ttlSeconds: 10))), (.leaseKeepAlive, .ttl(10)),
            (.stats, .stats(Array(#"{"keys":1}"#.utf8))),
        ]
        let errors: [MetadataError] = [.versionConflict(key: "/a", expected: Version(1), actual: Version(2)),
                                       .compacted(requested: Revision(1), oldest: Revision(5)), .unavailable("leader moved")]
        return zip(requests, replies).enumerated().map { i, pair in
            SeedFrames.stream([{ pair.0.encode(requestID: UInt64(i), into: &$0) },
                               { pair.1.1.encode(op: pair.1.0, requestID: UInt64(i), into: &$0) }])
        } + errors.map { error in SeedFrames.stream([{ error.encode(op: MetadataOp.commit.rawValue, requestID: 1, into: &$0) }]) }
    }
}
