// Reaches internal decoders through `@testable import`, which only a build with testability allows (debug, or
// the fuzzer build): a release build of the package leaves this target out (FuzzTarget.all).
#if DEBUG || DLOG_FUZZ
@testable import DLogBookie
import DLogWire

/// `JournalFileHeader.decode` and `JournalReplay.scan` (what a bookie reads from its journal at start).
///
/// Mode bits of the first byte: 1 compact (every 512 input bytes become one 4096-byte batch slot after a
/// 4096-byte header, instead of the input being the file itself), 2 recompute every record CRC the slots'
/// lengths allow, 4 write an intact file header, 8 scan with a successor limit of (1 + upper nibble) × 4096.
/// Contracts: scan ends on a batch boundary inside the file, with one record per sequence number taken; the
/// records taken depend only on the bytes before where it stopped; an intact header re-encodes to its bytes.
enum JournalTarget {
    static let slotInputBytes = 512
    static let firstSeq: UInt64 = 1

    static let target = FuzzTarget(name: "journal", run: { bytes in
        let (file, limit) = build(ModedInput(bytes))
        file.withUnsafeBytes { raw in
            let header = JournalFileHeader.decode(raw)
            if let header { checkHeader(header, raw) }
            check(raw, seq: header?.firstSeq ?? firstSeq, limit: limit)
        }
    }, seeds: JournalSeeds.all)

    static func build(_ input: ModedInput) -> (file: [UInt8], limit: Int?) {
        let limit = input.mode & 8 != 0 ? JournalFormat.alignment * (1 + Int(input.mode >> 4)) : nil
        guard input.mode & 1 != 0 else { return (input.rest, limit) }
        let slots = (input.rest.count + slotInputBytes - 1) / slotInputBytes
        var file = [UInt8](repeating: 0, count: JournalFormat.headerBytes + slots * JournalFormat.alignment)
        for slot in 0..<slots {
            let chunk = input.rest[(slot * slotInputBytes)..<min(input.rest.count, (slot + 1) * slotInputBytes)]
            file.replaceSubrange(slotOffset(slot)..<(slotOffset(slot) + chunk.count), with: chunk)
            if input.mode & 2 != 0 { fixChecksums(&file, slot: slotOffset(slot)) }
        }
        if input.mode & 4 != 0 {
            file.withUnsafeMutableBytes { raw in
                JournalFileHeader(fileNumber: 1, firstSeq: firstSeq, previousFileNumber: 0, previousEndOffset: 0)
                    .encode(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<JournalFormat.headerBytes]))
            }
        }
        return (file, limit)
    }

    static func slotOffset(_ slot: Int) -> Int { JournalFormat.headerBytes + slot * JournalFormat.alignment }

    /// Gives the batch record at `slot`, and the records it announces, the CRC their lengths call for.
    static func fixChecksums(_ file: inout [UInt8], slot: Int) {
        file.withUnsafeMutableBytes { raw in
            func fix(at offset: Int) -> Int? {
                guard offset + JournalFormat.recordHeaderBytes <= raw.count else { return nil }
                let length = Int(UnsafeRawBufferPointer(raw).loadBigEndian(UInt32.self, at: offset))
                guard length <= raw.count - offset - JournalFormat.recordHeaderBytes else { return nil }
                let total = JournalFormat.recordHeaderBytes + length
                let crc = JournalRecordCodec.checksum(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + total)]))
                raw.storeBigEndian(crc, at: offset + 4)
                return total
            }
            guard let first = fix(at: slot), first == JournalFormat.recordHeaderBytes + JournalFormat.batchPayloadBytes else { return }
            let count = UnsafeRawBufferPointer(raw).loadBigEndian(UInt32.self, at: slot + JournalFormat.recordHeaderBytes + 4)
            var at = slot + first
            for _ in 0..<min(Int(count), JournalFormat.alignment / JournalFormat.recordHeaderBytes) {
                guard let n = fix(at: at) else { return }
                at += n
            }
        }
    }

    static func checkHeader(_ header: JournalFileHeader, _ raw: UnsafeRawBufferPointer) {
        var again = [UInt8](repeating: 0, count: JournalFormat.headerBytes)
        again.withUnsafeMutableBytes { header.encode(into: $0) }
        require(Array(again[0..<44]) == Array(raw[0..<44]), "an intact journal header re-encodes to other bytes")
    }

    static func check(_ raw: UnsafeRawBufferPointer, seq: UInt64, limit: Int?) {
        let start = JournalFormat.headerBytes
        let scan = JournalReplay.scan(raw, from: start, seq: seq, limit: limit)
        require(scan.endOffset >= start && scan.endOffset % JournalFormat.alignment == 0
                && scan.endOffset <= max(start, raw.count), "scan ended at \(scan.endOffset), not a batch boundary in the file")
        require(UInt64(scan.records.count) == scan.nextSeq &- seq, "\(scan.records.count) records for sequence \(seq)..<\(scan.nextSeq)")
        switch scan.ending {
        case .limit: break
        case .tail(let offset), .corrupt(let offset, _):
            require(offset == scan.endOffset, "scan stopped at \(offset) but reports the end at \(scan.endOffset)")
        }
        // What was taken must not depend on anything after it: a file cut where the scan stopped gives the same.
        guard limit == nil, scan.endOffset <= raw.count else { return }
        let cut = JournalReplay.scan(UnsafeRawBufferPointer(rebasing: raw[0..<scan.endOffset]), from: start, seq: seq, limit: nil)
        require(cut.ending == .limit && cut.nextSeq == scan.nextSeq
                && cut.records.map(\.payload) == scan.records.map(\.payload), "the records taken depend on bytes after them")
    }
}

/// Journals written by the real record codec: batches of records, one of them torn.
enum JournalSeeds {
    static let compactIntact: UInt8 = 1 | 2 | 4

    @Sendable static func all() -> [[UInt8]] {
        let key = [UInt8](repeating: 7, count: 8) + MasterKey(password: "fuzz").bytes
        let two = [slot(seq: 1, [(.masterKey, key), (.add, SeedFrames.entry)], durable: 0), slot(seq: 3, [(.explicitLAC, [UInt8](repeating: 0, count: 16))], durable: 2)]
        let torn = [two[0], [UInt8](repeating: 0xEE, count: 64), slot(seq: 4, [(.delete, [UInt8](repeating: 1, count: 8))], durable: 3)]
        let compact = [compactIntact] + two.joined()
        return [
            compact,
            [compactIntact | 8 | (2 << 4)] + two.joined(),  // limit: the end of the second batch
            [compactIntact] + torn.joined(),
            [0] + JournalTarget.build(ModedInput(compact)).file,  // the same journal as a whole file
        ]
    }

    /// One 512-byte slot: a batch record and `records`, numbered from `seq`.
    static func slot(seq: UInt64, _ records: [(JournalRecordKind, [UInt8])], durable: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: JournalTarget.slotInputBytes)
        out.withUnsafeMutableBytes { raw in
            let info = BatchInfo(batchBytes: JournalFormat.alignment, recordCount: records.count, durableThrough: durable).encode()
            var at = info.withUnsafeBytes { JournalRecordCodec.write(kind: .batch, seq: seq, payload: $0, into: raw, at: 0) }
            for (i, (kind, payload)) in records.enumerated() {
                at += payload.withUnsafeBytes { JournalRecordCodec.write(kind: kind, seq: seq + UInt64(i), payload: $0, into: raw, at: at) }
            }
        }
        return out
    }
}
#endif
