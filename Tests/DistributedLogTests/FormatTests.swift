import DistributedLog
import DLogTestSupport
import DLogWire
import Testing

/// The stored formats of the log layer: positions, record batches, segment and log records, and names.
@Suite struct FormatTests {
    @Test func dlsnsOrderParseAndRoundTrip() throws {
        let a = DLSN(segment: 1, entry: 5, slot: 9), b = DLSN(segment: 2, entry: 0, slot: 0), c = DLSN(segment: 2, entry: 0, slot: 1)
        #expect(a < b && b < c && DLSN.initial < a)
        #expect(DLSN(parsing: "2/0/1") == c && c.description == "2/0/1")
        for bad in ["", "1/2", "0/0/0", "1/-1/0", "1/2/3/4", "a/b/c", "1//2"] { #expect(DLSN(parsing: bad) == nil, "\(bad)") }
        #expect(try DLSN(bytes: c.bytes) == c && c.bytes.count == 25)
        #expect(throws: DLSN.Malformed.self) { try DLSN(bytes: [2] + c.bytes.dropFirst()) }
    }

    @Test func recordBatchesRoundTripAndRefuseDamage() throws {
        var rng = SeededGenerator(seed: 17)
        for _ in 0..<200 {
            let count = Int.random(in: 1...20, using: &rng)
            let records = (0..<count).map { n in
                RecordBatch.Record(flags: n % 7 == 6 ? RecordBatch.Record.control : 0, txid: Int64.random(in: 0...1_000_000, using: &rng),
                                   payload: (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            }
            let first = Int64.random(in: 0...1_000, using: &rng)
            let bytes = RecordBatch.encode(records, firstPosition: first)
            #expect(bytes.count == RecordBatch.headerBytes + records.reduce(0) { $0 + $1.encodedBytes })
            #expect(try RecordBatch.decode(bytes) == RecordBatch.Decoded(firstPosition: first, records: records))
            // Every cut short, and a count that cannot fit, is refused, never trapped on.
            let cut = Int.random(in: 0..<bytes.count, using: &rng)
            #expect(throws: RecordBatch.Malformed.self) { try RecordBatch.decode(Array(bytes.prefix(cut))) }
        }
        var huge = RecordBatch.encode([.init(txid: 1, payload: [1])], firstPosition: 0)
        huge.replaceSubrange(12..<16, with: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: RecordBatch.Malformed.self) { try RecordBatch.decode(huge) }
        // A record length that does not fit the body, with the sizes in the header intact: the first record's
        // length (bytes 29-32) one longer or shorter runs the next record past the body, a length past the body
        // ends early, and one short in a batch of one leaves a byte over. Each is named.
        let pair: [RecordBatch.Record] = [.init(txid: 1, payload: [UInt8](repeating: 7, count: 64)),
                                          .init(txid: 2, payload: [UInt8](repeating: 9, count: 64))]
        let cases = [(pair, 65, "ends early"), (pair, 63, "ends early"), (pair, 0xFFFF, "ends early"),
                     ([pair[0]], 63, "1 bytes after the last record")]
        for (records, length, named) in cases {
            var bytes = RecordBatch.encode(records, firstPosition: 0)
            bytes.replaceSubrange(29..<33, with: withUnsafeBytes(of: UInt32(length).bigEndian, Array.init))
            let error = #expect(throws: RecordBatch.Malformed.self) { try RecordBatch.decode(bytes) }
            #expect(error.map { "\($0)".contains(named) } == true, "\(length): \(String(describing: error))")
        }
        var newer = RecordBatch.encode([.init(txid: 1, payload: [1])], firstPosition: 0)
        newer[0] = 2
        #expect { try RecordBatch.decode(newer) } throws: { "\($0)".contains("upgrade") }
    }

    @Test func lz4BatchesRoundTripAndAreStoredPlainWhenThatIsSmaller() throws {
        let records = (0..<50).map { n in RecordBatch.Record(txid: Int64(n), payload: Array(repeating: UInt8(n % 3), count: 200)) }
        let plain = RecordBatch.encode(records, firstPosition: 7)
        let packed = RecordBatch.encode(records, firstPosition: 7, codec: .lz4)
        #expect(packed[1] == RecordBatch.Codec.lz4.rawValue && packed.count * 4 < plain.count, "\(packed.count) vs \(plain.count)")
        #expect(try RecordBatch.decode(packed) == RecordBatch.Decoded(firstPosition: 7, records: records))
        #expect(throws: RecordBatch.Malformed.self) { try RecordBatch.decode(Array(packed.dropLast(5))) }
        // Random bytes do not compress: never stored larger than plain, and still decodable.
        var rng = SeededGenerator(seed: 3)
        let noise = [RecordBatch.Record(txid: 1, payload: (0..<500).map { _ in UInt8.random(in: 0...255, using: &rng) })]
        let stored = RecordBatch.encode(noise, firstPosition: 0, codec: .lz4)
        let decoded = try RecordBatch.decode(stored)
        #expect(stored.count <= RecordBatch.encode(noise, firstPosition: 0).count && decoded.records == noise)
    }

    @Test func segmentAndLogRecordsRoundTripAndRefuseDamage() throws {
        var segment = LogSegment(sequence: 7, ledger: LedgerID(42), firstTxID: 100, startSequenceID: 5000, creationTime: 123)
        #expect(try LogSegmentCodec.decode(LogSegmentCodec.encode(segment)) == segment)
        segment.state = .completed
        (segment.lastTxID, segment.lastEntry, segment.lastSlot, segment.recordCount, segment.completionTime) = (200, 9, 3, 77, 456)
        segment.endOfStream = true
        segment.truncation = .partiallyTruncated(minActive: DLSN(segment: 7, entry: 3, slot: 1))
        let bytes = LogSegmentCodec.encode(segment)
        #expect(try LogSegmentCodec.decode(bytes) == segment)
        #expect(segment.lastDLSN == DLSN(segment: 7, entry: 9, slot: 3))
        for index in [0, 6, 20, bytes.count - 1] {
            var damaged = bytes
            damaged[index] ^= 0x10
            #expect(throws: StoredFormatError.self) { try LogSegmentCodec.decode(damaged) }
        }
        var info = LogInfo(creationTime: 99)
        (info.lastSegment, info.maxTxID, info.endOfStream) = (3, 1234, true)
        #expect(try LogInfoCodec.decode(LogInfoCodec.encode(info)) == info)
        #expect(throws: StoredFormatError.self) { try LogInfoCodec.decode(LogSegmentCodec.encode(segment)) }
    }

    @Test func logNamesAreChecked() {
        for good in ["a", "orders", "team.a/orders-2024_v1", String(repeating: "x", count: 200)] {
            #expect(LogName.problem(good) == nil, "\(good)")
        }
        let bad = ["", "/a", "a/", "a//b", "a/../b", ".", "a b", "a:b", "ä", String(repeating: "x", count: 201)]
        for name in bad { #expect(LogName.problem(name) != nil, "\(name)") }
        #expect(LogName.problem("a:b")?.contains("':' is not allowed") == true)
        #expect(LogName.subscriptionProblem("a/b") != nil)
        // Keys of a log never fall under another log's prefix, even when names nest.
        #expect(!LogKeys.segment("a/seg", 1).hasPrefix(LogKeys.all("a")))
        #expect(LogKeys.segment("a", 12) == "/log/a:seg/0000000000000000012")
    }
}
