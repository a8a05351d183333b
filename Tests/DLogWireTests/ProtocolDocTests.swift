import DLogTestSupport
import DLogWire
import Foundation
import NIOCore
import Testing

/// The worked byte examples of docs/protocol.md (bookie and proxy frames, the entry CRC) and docs/metadata.md
/// (ledger metadata), held against the real encoders and decoders. When one of these fails after a deliberate
/// format change, the message prints the encoder's bytes in the documents' dump format.
@Suite struct ProtocolDocTests {
    static func same(_ documented: [UInt8], _ actual: [UInt8], _ name: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(documented == actual, "example '\(name)' differs from the encoder, which gives:\n\(docHexDump(actual))",
                sourceLocation: sourceLocation)
    }

    static let hello = Array("hello".utf8)
    static let helloEntry = EntryCodec.encode(EntryHeader(ledger: LedgerID(1), entry: EntryID(0), lastAddConfirmed: .none,
                                                          ledgerLength: 5), payload: hello)

    /// The ADD example (frame dump and one-string form) is what the request encoder writes for the inputs the
    /// text states, and decodes back to that request.
    @Test func addRequestExample() throws {
        let doc = try DocExamples("protocol.md")
        let request = BookieRequest.add(masterKey: MasterKey(bytes: [UInt8](repeating: 0, count: 20))!, entry: Self.helloEntry,
                                        recovery: false)
        let actual = docEncoded { request.encode(requestID: 7, into: &$0) }
        Self.same(try doc.bytes("add-request"), actual, "add-request")
        Self.same(try doc.bytes("add-request-string"), actual, "add-request-string")
        let frame = try docFrame(try doc.bytes("add-request"))
        #expect(frame.header.requestID == 7)
        #expect(try BookieRequest.decode(frame) == request)
    }

    /// The ADD answer example is what the response encoder writes, and decodes back to ledger 1, entry 0.
    @Test func addResponseExample() throws {
        let doc = try DocExamples("protocol.md")
        let response = BookieResponse.added(ledger: LedgerID(1), entry: EntryID(0))
        Self.same(try doc.bytes("add-response"), docEncoded { response.encode(op: .add, requestID: 7, into: &$0) },
                  "add-response")
        let (op, decoded) = try BookieResponse.decode(try docFrame(try doc.bytes("add-response")))
        #expect(op == .add && decoded == response)
    }

    /// The CRC worked value: the 37 bytes are the entry's first 32 bytes and its payload, their CRC32C is the one
    /// the entry encoder stores, and the value the text gives (and the check value of "123456789") is that CRC.
    @Test func crcWorkedValue() throws {
        let doc = try DocExamples("protocol.md")
        let covered = try doc.bytes("crc-input")
        Self.same(covered, Array(Self.helloEntry[0..<32]) + Self.hello, "crc-input")
        let crc = CRC32C.checksum(covered)
        #expect(crc == Self.helloEntry.withUnsafeBytes { $0.loadBigEndian(UInt32.self, at: 32) })
        #expect(doc.text.contains("equals **`\(String(format: "0x%08X", crc))`**"), "the text states the CRC of the example")
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(doc.text.contains("`crc32c(\"123456789\") = 0xE3069283`"))
    }

    /// The bookie error example: a READ request and a NO_LEDGER answer whose body is the bare UTF-8 message, as
    /// the encoders write them and the decoders read them.
    @Test func bookieErrorExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("bookie-read-no-ledger")
        try #require(messages.count == 2)
        let request = BookieRequest.read(ledger: LedgerID(9), entry: EntryID(0), fenceWith: nil)
        let answer = BookieResponse.failed(.noLedger, message: "L9 is not on this bookie")
        Self.same(messages[0], docEncoded { request.encode(requestID: 2, into: &$0) }, "bookie-read-no-ledger request")
        Self.same(messages[1], docEncoded { answer.encode(op: .read, requestID: 2, into: &$0) }, "bookie-read-no-ledger answer")
        #expect(try BookieRequest.decode(try docFrame(messages[0])) == request)
        let (op, decoded) = try BookieResponse.decode(try docFrame(messages[1]))
        #expect(op == .read && decoded == answer)
    }

    /// The LIST_ENTRIES example: the request for at most 2 ranges and the answer with two ranges and where to ask
    /// again, as the codec writes them; and the answer's ranges are those of the ids the text says are stored.
    @Test func listEntriesExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("list-entries")
        try #require(messages.count == 2)
        let request = BookieRequest.listEntries(ledger: LedgerID(4), from: EntryID(0), rangesMax: 2)
        let stored = EntryRange.ranges(of: [0, 1, 3, 4, 6] as [Int64])
        let answer = BookieResponse.entries(ranges: Array(stored.prefix(2)), next: stored[2].first)
        Self.same(messages[0], docEncoded { request.encode(requestID: 3, into: &$0) }, "list-entries request")
        Self.same(messages[1], docEncoded { answer.encode(op: .listEntries, requestID: 3, into: &$0) }, "list-entries answer")
        #expect(try BookieRequest.decode(try docFrame(messages[0])) == request)
        let (op, decoded) = try BookieResponse.decode(try docFrame(messages[1]))
        #expect(op == .listEntries && decoded == answer)
    }

    /// The LEDGER_KEY example: request and answer are the bytes the text shows, as the codec writes and reads them.
    @Test func ledgerKeyExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("ledger-key")
        try #require(messages.count == 2)
        let request = BookieRequest.ledgerKey(ledger: LedgerID(9))
        let answer = BookieResponse.masterKey(try #require(MasterKey(bytes: Array(1...20))))
        Self.same(messages[0], docEncoded { request.encode(requestID: 5, into: &$0) }, "ledger-key request")
        Self.same(messages[1], docEncoded { answer.encode(op: .ledgerKey, requestID: 5, into: &$0) }, "ledger-key answer")
        #expect(try BookieRequest.decode(try docFrame(messages[0])) == request)
        let (op, decoded) = try BookieResponse.decode(try docFrame(messages[1]))
        #expect(op == .ledgerKey && decoded == answer)
    }

    /// Entries 0 and 1 of ledger 3 with empty payloads, as the READ_RANGE and ADD_BATCH examples state them.
    static let rangeEntries = [
        EntryCodec.encode(EntryHeader(ledger: LedgerID(3), entry: EntryID(0), lastAddConfirmed: .none, ledgerLength: 0), payload: []),
        EntryCodec.encode(EntryHeader(ledger: LedgerID(3), entry: EntryID(1), lastAddConfirmed: EntryID(0), ledgerLength: 0), payload: []),
    ]

    /// The READ_RANGE example: the request for entries 0 to 9 with at most 40 bytes, and the answer holding entry 0
    /// alone with where to ask again, as the codec writes and reads them.
    @Test func readRangeExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("read-range")
        try #require(messages.count == 2)
        let request = BookieRequest.readRange(ledger: LedgerID(3), first: EntryID(0), last: EntryID(9), maxBytes: 40)
        let answer = BookieResponse.entryBatch(entries: [Self.rangeEntries[0]], next: EntryID(1))
        #expect(Self.rangeEntries.reduce(0) { $0 + $1.count } == 72, "the text says both entries take 72 bytes")
        Self.same(messages[0], docEncoded { request.encode(requestID: 6, into: &$0) }, "read-range request")
        Self.same(messages[1], docEncoded { answer.encode(op: .readRange, requestID: 6, into: &$0) }, "read-range answer")
        #expect(try BookieRequest.decode(try docFrame(messages[0])) == request)
        let (op, decoded) = try BookieResponse.decode(try docFrame(messages[1]))
        #expect(op == .readRange && decoded == answer)
    }

    /// The READ_LAC example with the next entry: a long poll of ledger 3 past LAC -1 asking for the entry, and the
    /// answer holding LAC 0, last entry 1 and entry 0, as the codec writes and reads them.
    @Test func readLACWithEntryExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("read-lac-entry")
        try #require(messages.count == 2)
        let request = BookieRequest.readLAC(ledger: LedgerID(3), longPoll: .init(previous: EntryID(-1), timeoutMilliseconds: 1_000,
                                                                                  withEntry: true))
        let answer = BookieResponse.lacAndEntry(lac: EntryID(0), lastEntry: EntryID(1), entry: Self.rangeEntries[0])
        Self.same(messages[0], docEncoded { request.encode(requestID: 8, into: &$0) }, "read-lac-entry request")
        Self.same(messages[1], docEncoded { answer.encode(op: .readLAC, requestID: 8, into: &$0) }, "read-lac-entry answer")
        #expect(try BookieRequest.decode(try docFrame(messages[0])) == request)
        let (op, decoded) = try BookieResponse.decode(try docFrame(messages[1]))
        #expect(op == .readLAC && decoded == answer)
    }

    /// The ADD_BATCH example: a recovery batch of the two entries and its answer, as the codec writes and reads them.
    @Test func addBatchExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("add-batch")
        try #require(messages.count == 2)
        let request = BookieRequest.addBatch(masterKey: try #require(MasterKey(bytes: [UInt8](repeating: 0, count: 20))),
                                             entries: Self.rangeEntries, recovery: true)
        let answer = BookieResponse.addedBatch(count: 2)
        Self.same(messages[0], docEncoded { request.encode(requestID: 7, into: &$0) }, "add-batch request")
        Self.same(messages[1], docEncoded { answer.encode(op: .addBatch, requestID: 7, into: &$0) }, "add-batch answer")
        #expect(try BookieRequest.decode(try docFrame(messages[0])) == request)
        let (op, decoded) = try BookieResponse.decode(try docFrame(messages[1]))
        #expect(op == .addBatch && decoded == answer)
    }

    /// The proxy WRITE example: request, OK answer with a DLSN, and a REDIRECT answer, as the proxy codec writes
    /// them and reads them back.
    @Test func proxyWriteExamples() throws {
        let doc = try DocExamples("protocol.md")
        let request = ProxyRequest.write(stream: "s", ProxyRecord(txid: nil, payload: Array("hi".utf8)))
        Self.same(try doc.bytes("proxy-write-request"), docEncoded { request.encode(requestID: 1, into: &$0) },
                  "proxy-write-request")
        #expect(try ProxyRequest.decode(try docFrame(try doc.bytes("proxy-write-request"))) == request)

        let reply = ProxyReply.written(DLSN(segment: 1, entry: 0, slot: 0))
        Self.same(try doc.bytes("proxy-write-answer"), docEncoded { reply.encode(op: .write, requestID: 1, into: &$0) },
                  "proxy-write-answer")
        #expect(ProxyReply.decode(try docFrame(try doc.bytes("proxy-write-answer")), op: .write) == .success(reply))

        let redirect = ProxyFailure(.redirect, "10.0.0.2:3190")
        Self.same(try doc.bytes("proxy-write-redirect"),
                  docEncoded { redirect.encode(op: ProxyOp.write.rawValue, requestID: 1, into: &$0) }, "proxy-write-redirect")
        #expect(ProxyReply.decode(try docFrame(try doc.bytes("proxy-write-redirect")), op: .write) == .failure(redirect))
    }

    /// The proxy's answer to an unknown operation: the request codec refuses the documented frame with
    /// BAD_REQUEST, and that failure, encoded as the proxy's connection handler does, is the documented answer:
    /// op with the response bit, status 9, one length-prefixed string.
    @Test func proxyUnknownOperationExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("proxy-unknown-op")
        try #require(messages.count == 2)
        let frame = try docFrame(messages[0])
        #expect(frame.header.op == BookieOp.add.rawValue && frame.header.requestID == 3 && frame.body.readableBytes == 0)
        var failure: ProxyFailure?
        do {
            _ = try ProxyRequest.decode(frame)
        } catch {
            failure = error
        }
        let refused = try #require(failure, "an unknown operation is refused")
        #expect(refused.status == .badRequest && refused.message == "unknown operation 0x1 for the proxy role")
        Self.same(messages[1], docEncoded { refused.encode(op: frame.header.op, requestID: 3, into: &$0) }, "proxy-unknown-op answer")

        let answer = try docFrame(messages[1])
        #expect(answer.header.op == 0x81 && answer.header.flagsOrStatus == ProxyStatus.badRequest.rawValue)
        var body = answer.body
        let length = body.readInteger(as: UInt16.self).map(Int.init) ?? -1
        #expect(length == refused.message.utf8.count)
        #expect(body.readString(length: max(length, 0)) == refused.message && body.readableBytes == 0)
    }

    /// The ledger-metadata example of docs/metadata.md is what the codec writes for the inputs it states, and
    /// decodes back to them.
    @Test func ledgerMetadataExample() throws {
        let doc = try DocExamples("metadata.md")
        let metadata = LedgerMetadata(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2, passwordHash: [],
                                      fragments: [.init(firstEntry: EntryID(0), bookies: ["b1", "b2", "b3"].map { BookieID($0) })],
                                      creationTime: 1_700_000_000_000)
        let documented = try doc.bytes("ledger-metadata")
        Self.same(documented, LedgerMetadataCodec.encode(metadata), "ledger-metadata")
        #expect(try LedgerMetadataCodec.decode(documented) == metadata)
    }

    /// The example reader itself: offsets are checked, blank lines split messages, and a changed byte is seen
    /// (so the tests above can fail when the documents drift).
    @Test func exampleReaderCatchesDrift() throws {
        let text = "<!-- example: x -->\n```\n0000  01 02\n\n0000  03\n```\n<!-- example: y -->\n\n```\n0a0b0c\n```\n"
        let parsed = try DocExamples.parse(text, in: "test")
        #expect(parsed["x"] == [[1, 2], [3]] && parsed["y"] == [[10, 11, 12]])
        #expect(throws: DocExamples.Problem.self) { try DocExamples.parse("<!-- example: x -->\n```\n0001  01\n```\n", in: "t") }
        let real = try DocExamples("protocol.md")
        let changed = real.text.replacingOccurrences(of: "0040  00 00 00 05 e3 a5 f7 4d", with: "0040  00 00 00 05 e3 a5 f7 4e")
        #expect(changed != real.text, "the ADD example's CRC row is where this test expects it")
        #expect(try DocExamples.parse(changed, in: "changed")["add-request"] != real.examples["add-request"])
    }
}
