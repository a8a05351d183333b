import DLogWire
import Testing

@Suite struct CRC32CTests {
    /// The standard check value proves we compute Castagnoli, not the IEEE polynomial.
    @Test func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.portableChecksum($0) } == 0xE306_9283)
    }

    /// Published vectors (RFC 3720 B.4): 32 zero bytes and 32 0xFF bytes.
    @Test func iscsiVectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    }

    /// The hardware path runs three lanes at once on buffers of three lanes or more (lanes of 64, 256, 1,024 and
    /// 4,096 bytes) and joins them by table: it agrees with the portable path on every length up to past the
    /// smallest lanes' blocks and around one, two and three blocks of each lane size, at five alignments (aligned,
    /// odd, and 8-byte aligned but not 16), from random seeds.
    @Test func laneJoiningAgreesWithThePortablePath() {
        var rng = SystemRandomNumberGenerator()
        let buffer = (0..<(3 * 3 * 4096 + 64)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var lengths = Array(0...800)
        for lane in [64, 256, 1024, 4096] {
            for blocks in 1...3 { lengths += [-9, -1, 0, 1, 7, 8, 9, 63].map { blocks * 3 * lane + $0 } }
        }
        buffer.withUnsafeBytes { all in
            for length in lengths {
                for offset in [0, 1, 3, 8, 13] where offset + length <= all.count {
                    let bytes = UnsafeRawBufferPointer(rebasing: all[offset ..< offset + length])
                    let seed = UInt32.random(in: 0...UInt32.max, using: &rng)
                    #expect(CRC32C.checksum(bytes, seed: seed) == CRC32C.portableChecksum(bytes, seed: seed),
                            "length \(length) at offset \(offset) from seed \(seed)")
                }
            }
        }
    }

    /// The hardware and portable paths agree on every length and alignment, and chaining equals one pass.
    @Test func pathsAgreeAndChain() {
        var rng = SystemRandomNumberGenerator()
        for length in 0..<300 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let hw = CRC32C.checksum(bytes)
            let sw = bytes.withUnsafeBytes { CRC32C.portableChecksum($0) }
            #expect(hw == sw, "length \(length)")
            let cut = length / 3
            let chained = CRC32C.checksum(Array(bytes[cut...]), seed: CRC32C.checksum(Array(bytes[..<cut])))
            #expect(chained == hw, "chained at \(cut) of \(length)")
        }
    }
}
