// Reaches internal decoders through `@testable import`, which only a build with testability allows (debug, or
// the fuzzer build): a release build of the package leaves this target out (FuzzTarget.all).
#if DEBUG || DLOG_FUZZ
@testable import DistributedLog

/// `RecordBatch.decode` (the payload of every log entry a reader gets from a bookie). Contract: a decoded
/// batch encodes back to the same records; stored uncompressed with zero reserved bytes, to the input itself.
enum RecordBatchTarget {
    static let target = FuzzTarget(name: "record-batch", run: { bytes in
        guard let decoded = try? RecordBatch.decode(bytes) else { return }
        require(!decoded.records.isEmpty && decoded.firstPosition >= 0, "decode returned an impossible batch")
        let plain = RecordBatch.encode(decoded.records, firstPosition: decoded.firstPosition, codec: .none)
        if bytes[1] == RecordBatch.Codec.none.rawValue, bytes[2] == 0, bytes[3] == 0 {
            require(plain == bytes, "an uncompressed batch re-encodes to other bytes")
        }
        require((try? RecordBatch.decode(plain)) == decoded, "record batch does not survive a round trip")
        let compressed = RecordBatch.encode(decoded.records, firstPosition: decoded.firstPosition, codec: .lz4)
        require((try? RecordBatch.decode(compressed)) == decoded, "record batch does not survive an LZ4 round trip")
    }, seeds: {
        let records = [RecordBatch.Record(txid: 1, payload: Array("first".utf8)),
                       RecordBatch.Record(flags: RecordBatch.Record.control, txid: 2, payload: []),
                       RecordBatch.Record(txid: 3, payload: [UInt8](repeating: 0x61, count: 200)),
                       RecordBatch.Record(flags: RecordBatch.Record.endOfStream, txid: 4, payload: [1])]
        return [
            RecordBatch.encode(Array(records.prefix(1)), firstPosition: 0),
            RecordBatch.encode(records, firstPosition: 17),
            RecordBatch.encode(records, firstPosition: 17, codec: .lz4),
            RecordBatch.encode(Array(records.suffix(2)), firstPosition: 1 << 40, codec: .lz4),
        ]
    })
}
#endif
