import DLogWire

/// `LedgerMetadataCodec.decode` (stored in the metadata store, read by every client). Mode bit 0: the input is
/// the body without its CRC and the harness appends the right one, so mutations reach the fields behind it.
/// Contract: decoded metadata is sound, and encoding it then decoding gives it back.
enum LedgerMetadataTarget {
    static let target = FuzzTarget(name: "ledger-metadata", run: { bytes in
        let input = ModedInput(bytes)
        var stored = input.rest
        if input.mode & 1 != 0 { stored.appendBigEndian(CRC32C.checksum(stored)) }
        guard let metadata = try? LedgerMetadataCodec.decode(stored) else { return }
        require(metadata.problem == nil, "decode returned unsound metadata: \(metadata.problem ?? "")")
        let encoded = LedgerMetadataCodec.encode(metadata)
        require((try? LedgerMetadataCodec.decode(encoded)) == metadata, "ledger metadata does not survive a round trip")
    }, seeds: {
        let ensemble = (1...3).map { BookieID("bookie-\($0):3181") }
        let samples = [
            LedgerMetadata(ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, passwordHash: [1, 2, 3, 4],
                           fragments: [.init(firstEntry: EntryID(0), bookies: ensemble)], creationTime: 1_700_000_000_000),
            LedgerMetadata(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2, passwordHash: [],
                           fragments: [.init(firstEntry: EntryID(0), bookies: ensemble),
                                       .init(firstEntry: EntryID(10), bookies: ensemble.reversed())],
                           state: .closed, lastEntry: EntryID(20), length: 4096, creationTime: 5,
                           custom: ["application": Array("orders".utf8), "segment": [0, 1]]),
        ]
        // Each sample as stored (mode 0) and without its CRC (mode 1).
        return samples.flatMap { m -> [[UInt8]] in
            let encoded = LedgerMetadataCodec.encode(m)
            return [[0] + encoded, [1] + encoded.dropLast(4)]
        }
    })
}
