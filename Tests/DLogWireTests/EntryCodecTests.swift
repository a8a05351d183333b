import DLogWire
import Testing

@Suite struct EntryCodecTests {
    /// Encoding then validating gives back the header and payload for many shapes of entry.
    @Test func roundTrip() throws {
        for size in [0, 1, 35, 36, 1000, 70_000] {
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7) }
            let header = EntryHeader(ledger: LedgerID(UInt64(size) + 1), entry: EntryID(Int64(size)),
                                     lastAddConfirmed: EntryID(Int64(size) - 1), ledgerLength: UInt64(size * 3))
            let bytes = EntryCodec.encode(header, payload: payload)
            #expect(bytes.count == EntryHeader.byteCount + size)
            #expect(try EntryCodec.validate(bytes) == header)
            #expect(Array(EntryCodec.payload(of: bytes)) == payload)
            // A payload without contiguous storage takes the other path, to the same bytes.
            #expect(EntryCodec.encode(header, payload: (0..<size).lazy.map { UInt8(truncatingIfNeeded: $0 * 7) }) == bytes)
        }
    }

    /// Flipping any single bit of an entry, header or payload, is caught by its CRC.
    @Test func everyBitFlipIsCaught() {
        let bytes = EntryCodec.encode(EntryHeader(ledger: LedgerID(9), entry: EntryID(3), lastAddConfirmed: EntryID(2),
                                                  ledgerLength: 40), payload: Array("payload!".utf8))
        for i in 0..<bytes.count {
            for bit in 0..<8 {
                var damaged = bytes
                damaged[i] ^= UInt8(1 << bit)
                #expect(throws: EntryError.self) { try EntryCodec.validate(damaged) }
            }
        }
    }

    @Test func tooShortIsAnError() {
        #expect(throws: EntryError.tooShort(count: 10)) { try EntryCodec.validate([UInt8](repeating: 0, count: 10)) }
    }
}

@Suite struct EntryHeaderParseTests {
    /// The unchecked header parse agrees with the checked one, and refuses bytes that are too short.
    @Test func headerParseAgrees() throws {
        let h = EntryHeader(ledger: LedgerID(42), entry: EntryID(7), lastAddConfirmed: EntryID(6), ledgerLength: 99)
        let bytes = EntryCodec.encode(h, payload: [1, 2, 3])
        #expect(EntryCodec.header(of: bytes) == h)
        #expect(try EntryCodec.validate(bytes) == h)
        #expect(EntryCodec.header(of: Array(bytes.prefix(35))) == nil)
    }
}
