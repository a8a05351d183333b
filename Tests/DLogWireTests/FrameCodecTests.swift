import DLogTestSupport
import DLogWire
import NIOCore
import Testing

@Suite struct FrameCodecTests {
    static let key = MasterKey(password: "k")
    static let requests: [BookieRequest] = [
        .add(masterKey: key, entry: EntryCodec.encode(EntryHeader(ledger: LedgerID(1), entry: EntryID(0),
             lastAddConfirmed: .none, ledgerLength: 5), payload: Array("hello".utf8)), recovery: false),
        .add(masterKey: key, entry: EntryCodec.encode(EntryHeader(ledger: LedgerID(2), entry: EntryID(7),
             lastAddConfirmed: EntryID(6), ledgerLength: 0), payload: []), recovery: true),
        .read(ledger: LedgerID(3), entry: EntryID(-1), fenceWith: nil),
        .read(ledger: LedgerID(3), entry: EntryID(4), fenceWith: key),
        .readLAC(ledger: LedgerID(5), longPoll: nil),
        .readLAC(ledger: LedgerID(5), longPoll: .init(previous: EntryID(9), timeoutMilliseconds: 500)),
        .readLAC(ledger: LedgerID(5), longPoll: .init(previous: EntryID(9), timeoutMilliseconds: 500, withEntry: true)),
        .writeLAC(ledger: LedgerID(6), masterKey: key, lac: EntryID(12)),
        .deleteLedger(ledger: LedgerID(7)),
        .getInfo,
        .listEntries(ledger: LedgerID(8), from: EntryID(100), rangesMax: 4096),
        .ledgerKey(ledger: LedgerID(9)),
        .readRange(ledger: LedgerID(10), first: EntryID(0), last: EntryID(63), maxBytes: 1 << 20),
        .addBatch(masterKey: key, entries: [
            EntryCodec.encode(EntryHeader(ledger: LedgerID(11), entry: EntryID(0), lastAddConfirmed: .none,
                                          ledgerLength: 1), payload: [7]),
            EntryCodec.encode(EntryHeader(ledger: LedgerID(11), entry: EntryID(1), lastAddConfirmed: EntryID(0),
                                          ledgerLength: 1), payload: []),
        ], recovery: true),
    ]

    static func encodeAll() -> ByteBuffer {
        var buffer = ByteBuffer()
        for (i, r) in requests.enumerated() { r.encode(requestID: UInt64(100 + i), into: &buffer) }
        return buffer
    }

    static func decodeAll(_ chunks: [ByteBuffer]) throws -> [(UInt64, BookieRequest)] {
        var pending = ByteBuffer()
        var out: [(UInt64, BookieRequest)] = []
        for var chunk in chunks {
            pending.writeBuffer(&chunk)
            while let frame = try FrameDecoder.next(from: &pending, maxFrameBytes: 1 << 20) {
                out.append((frame.header.requestID, try BookieRequest.decode(frame)))
            }
        }
        #expect(pending.readableBytes == 0)
        return out
    }

    /// Requests survive encode → decode whole, byte by byte, and in random splits.
    @Test func requestsRoundTripInAnySplit() throws {
        let all = Self.encodeAll()
        var splits: [[ByteBuffer]] = [[all]]
        splits.append((0..<all.readableBytes).map { all.getSlice(at: $0, length: 1)! })
        for _ in 0..<20 {
            var chunks: [ByteBuffer] = []
            var at = 0
            while at < all.readableBytes {
                let n = min(Int.random(in: 1...40), all.readableBytes - at)
                chunks.append(all.getSlice(at: at, length: n)!)
                at += n
            }
            splits.append(chunks)
        }
        for chunks in splits {
            let decoded = try Self.decodeAll(chunks)
            #expect(decoded.map(\.1) == Self.requests)
            #expect(decoded.map(\.0) == (0..<Self.requests.count).map { UInt64(100 + $0) })
        }
    }

    /// Every response shape round-trips with its op and request id.
    @Test func responsesRoundTrip() throws {
        let cases: [(BookieOp, BookieResponse)] = [
            (.add, .added(ledger: LedgerID(1), entry: EntryID(2))),
            (.read, .entry([1, 2, 3])),
            (.readLAC, .lac(lac: EntryID(4), lastEntry: EntryID(5))),
            (.readLAC, .lacAndEntry(lac: EntryID(4), lastEntry: EntryID(5), entry: Array(repeating: 7, count: 40))),
            (.writeLAC, .done), (.deleteLedger, .done),
            (.getInfo, .info(json: "{\"a\":1}")),
            (.listEntries, .entries(ranges: [EntryRange(EntryID(0), EntryID(9)), EntryRange(EntryID(12), EntryID(12))], next: nil)),
            (.listEntries, .entries(ranges: [EntryRange(EntryID(3), EntryID(5))], next: EntryID(40))),
            (.listEntries, .entries(ranges: [], next: nil)),
            (.readRange, .entryBatch(entries: [[1, 2, 3], [], [4]], next: EntryID(17))),
            (.readRange, .entryBatch(entries: [], next: nil)),
            (.addBatch, .addedBatch(count: 64)),
            (.add, .failed(.fenced, message: "L1 is fenced")),
        ]
        for (i, (op, response)) in cases.enumerated() {
            var buffer = ByteBuffer()
            response.encode(op: op, requestID: UInt64(i), into: &buffer)
            let frame = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 1 << 20))
            #expect(frame.header.requestID == UInt64(i))
            let (decodedOp, decoded) = try BookieResponse.decode(frame)
            #expect(decodedOp == op)
            #expect(decoded == response)
        }
    }

    /// A length over the limit is refused from the 4 length bytes alone, before any body arrives.
    @Test func oversizeFrameRefusedBeforeBody() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1 << 30))
        #expect(throws: FrameError.tooLarge(length: 1 << 30, max: 4096)) {
            try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096)
        }
    }

    /// Truncated bodies, trailing bytes, unknown ops and bad versions are errors, never crashes.
    @Test func malformedBodiesAreErrors() throws {
        var buffer = ByteBuffer()
        buffer.writeFrame(FrameHeader(op: BookieOp.read.rawValue, flagsOrStatus: 0, requestID: 1)) {
            $0.writeInteger(UInt64(1))
        }
        let short = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096))
        #expect(throws: ProtocolError.self) { try BookieRequest.decode(short) }

        buffer.writeFrame(FrameHeader(op: 99, flagsOrStatus: 0, requestID: 1)) { _ in }
        let unknown = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096))
        #expect(throws: ProtocolError.self) { try BookieRequest.decode(unknown) }

        buffer.writeFrame(FrameHeader(op: BookieOp.getInfo.rawValue, flagsOrStatus: 0, requestID: 1)) {
            $0.writeInteger(UInt8(1))
        }
        let trailing = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096))
        #expect(throws: ProtocolError.self) { try BookieRequest.decode(trailing) }

        // Batches: a range running backwards, an empty ADD_BATCH, one whose count the frame cannot hold, one whose
        // entry is shorter than an entry header.
        buffer.writeFrame(FrameHeader(op: BookieOp.readRange.rawValue, flagsOrStatus: 0, requestID: 1)) {
            $0.writeInteger(UInt64(1)); $0.writeInteger(Int64(5)); $0.writeInteger(Int64(4)); $0.writeInteger(UInt32(1))
        }
        let backwards = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096))
        #expect(throws: ProtocolError.self) { try BookieRequest.decode(backwards) }
        for (count, lengths) in [(0, [Int]()), (1_000_000, [36]), (1, [35])] {
            buffer.writeFrame(FrameHeader(op: BookieOp.addBatch.rawValue, flagsOrStatus: 0, requestID: 1)) {
                $0.writeBytes(Self.key.bytes)
                $0.writeInteger(UInt32(count))
                for length in lengths {
                    $0.writeInteger(UInt32(length))
                    $0.writeBytes([UInt8](repeating: 0, count: length))
                }
            }
            let bad = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096))
            #expect(throws: ProtocolError.self, "count \(count), lengths \(lengths)") { try BookieRequest.decode(bad) }
        }

        buffer.writeFrame(FrameHeader(version: 9, op: 1, flagsOrStatus: 0, requestID: 1)) { _ in }
        #expect(throws: FrameError.unsupportedVersion(9)) { try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096) }
    }

    /// Random bytes never crash the decoder: each attempt either yields frames or throws, and the decoder never
    /// takes more bytes than it was given.
    @Test func randomBytesNeverCrash() {
        for seed in 0..<500 {
            var rng = SeededGenerator(seed: UInt64(seed))
            let bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var buffer = ByteBuffer(bytes: bytes)
            var framed = 0
            while let frame = try? FrameDecoder.next(from: &buffer, maxFrameBytes: 4096) {
                framed += 4 + FrameHeader.fixedByteCount + frame.body.readableBytes
                _ = try? BookieRequest.decode(frame)
                _ = try? BookieResponse.decode(frame)
            }
            #expect(framed + buffer.readableBytes <= bytes.count, "seed \(seed)")
        }
    }

    /// Random bodies in well-formed frames of every bookie operation, with random flags: the request decoder
    /// either refuses one with a ProtocolError or yields a request that encodes and decodes back to itself.
    /// Both happen over the seeded inputs (short bodies make exact lengths likely), so the check is exercised.
    @Test func randomBodiesAreRefusedOrRoundTrip() throws {
        var decoded = 0, refused = 0
        for seed in 0..<2000 {
            var rng = SeededGenerator(seed: UInt64(seed))
            let op = BookieOp.allCases.randomElement(using: &rng)!
            let body = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var buffer = ByteBuffer()
            buffer.writeFrame(FrameHeader(op: op.rawValue, flagsOrStatus: UInt16.random(in: 0...3, using: &rng),
                                          requestID: UInt64(seed))) { $0.writeBytes(body) }
            let frame = try #require(try FrameDecoder.next(from: &buffer, maxFrameBytes: 4096))
            do {
                let request = try BookieRequest.decode(frame)
                var again = ByteBuffer()
                request.encode(requestID: UInt64(seed), into: &again)
                let reread = try #require(try FrameDecoder.next(from: &again, maxFrameBytes: 4096))
                #expect(try BookieRequest.decode(reread) == request, "seed \(seed): \(request)")
                decoded += 1
            } catch is ProtocolError {
                refused += 1
            }
        }
        #expect(decoded > 0 && refused > 0, "decoded \(decoded), refused \(refused)")
    }
}
