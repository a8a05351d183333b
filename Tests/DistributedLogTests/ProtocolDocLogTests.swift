import DistributedLog
import DLogLedger
import DLogTestSupport
import DLogWire
import Testing

/// The worked byte examples of docs/protocol.md's "Log data" section (log record, segment record, the segment
/// ledger's password values and metadata, a record batch), held against the real codecs. A failure prints the
/// encoder's bytes in the document's dump format.
@Suite struct ProtocolDocLogTests {
    static func same(_ documented: [UInt8], _ actual: [UInt8], _ name: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(documented == actual, "example '\(name)' differs from the encoder, which gives:\n\(docHexDump(actual))",
                sourceLocation: sourceLocation)
    }

    static let created: Int64 = 1_700_000_000_000

    /// The log record example is `LogInfoCodec`'s encoding of the stated record, and decodes back to it.
    @Test func logInfoExample() throws {
        let doc = try DocExamples("protocol.md")
        var info = LogInfo(creationTime: Self.created)
        info.lastSegment = 1
        info.maxTxID = 42
        let documented = try doc.bytes("log-info")
        Self.same(documented, LogInfoCodec.encode(info), "log-info")
        #expect(try LogInfoCodec.decode(documented) == info)
    }

    /// The segment record example is `LogSegmentCodec`'s encoding of the stated completed segment, decodes back to
    /// it, and its key is written as the text says.
    @Test func logSegmentExample() throws {
        let doc = try DocExamples("protocol.md")
        var segment = LogSegment(sequence: 1, ledger: LedgerID(7), firstTxID: 41, startSequenceID: 0, creationTime: Self.created)
        segment.state = .completed
        (segment.lastTxID, segment.lastEntry, segment.lastSlot) = (42, 0, 1)
        segment.recordCount = 2
        segment.completionTime = Self.created + 60_000
        let documented = try doc.bytes("log-segment")
        Self.same(documented, LogSegmentCodec.encode(segment), "log-segment")
        #expect(try LogSegmentCodec.decode(documented) == segment)
        #expect(doc.text.contains("`\(LogKeys.segment("s", 1))`"))
    }

    /// The master key and check value of the password "distributedlog" are what `LedgerPassword` derives, and
    /// the ledger metadata example of the segment's ledger is `LedgerMetadataCodec`'s encoding with that check
    /// value and the `log` custom pair, decoding back to the same metadata.
    @Test func segmentLedgerExamples() throws {
        let doc = try DocExamples("protocol.md")
        let password = LedgerPassword("distributedlog")
        let keys = try doc.messages("ledger-password")
        try #require(keys.count == 2)
        Self.same(keys[0], password.masterKey.bytes, "ledger-password master key")
        Self.same(keys[1], password.check, "ledger-password check value")
        #expect(password.masterKey == MasterKey(password: "ledger:distributedlog"))

        let metadata = LedgerMetadata(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2, passwordHash: password.check,
                                      fragments: [.init(firstEntry: EntryID(0), bookies: ["b1", "b2", "b3"].map { BookieID($0) })],
                                      state: .closed, lastEntry: EntryID(0), length: 50, creationTime: Self.created,
                                      custom: ["log": Array("s".utf8)])
        let documented = try doc.bytes("segment-ledger-metadata")
        Self.same(documented, LedgerMetadataCodec.encode(metadata), "segment-ledger-metadata")
        #expect(try LedgerMetadataCodec.decode(documented) == metadata)
    }

    /// The record batch example is `RecordBatch`'s encoding of the two stated records, decodes back to them, and
    /// is as long as the ledger length the metadata example states.
    @Test func recordBatchExample() throws {
        let doc = try DocExamples("protocol.md")
        let records = [RecordBatch.Record(txid: 41, payload: Array("hi".utf8)), RecordBatch.Record(txid: 42, payload: Array("yo".utf8))]
        let documented = try doc.bytes("record-batch")
        Self.same(documented, RecordBatch.encode(records, firstPosition: 0), "record-batch")
        #expect(try RecordBatch.decode(documented) == RecordBatch.Decoded(firstPosition: 0, records: records))
        #expect(documented.count == 50)
    }
}
