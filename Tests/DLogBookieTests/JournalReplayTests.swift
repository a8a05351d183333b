@testable import DLogBookie
import DLogWire
import Testing

/// Builds journal file images byte by byte, exactly as the writer lays them out, to test replay's decisions.
struct JournalImage {
    var bytes: [UInt8]
    var batchOffsets: [Int] = []
    var nextSeq: UInt64
    var durableThrough: UInt64

    init(fileBytes: Int = 256 * 1024, firstSeq: UInt64 = 1, fileNumber: UInt64 = 1) {
        bytes = [UInt8](repeating: 0, count: fileBytes)
        nextSeq = firstSeq
        durableThrough = firstSeq - 1
        let header = JournalFileHeader(fileNumber: fileNumber, firstSeq: firstSeq, previousFileNumber: 0,
                                       previousEndOffset: 0)
        bytes.withUnsafeMutableBytes { header.encode(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<4096])) }
        write = 4096
    }

    var write: Int

    /// Appends one batch of payloads; each batch is durable before the next is built, as with one in flight.
    mutating func batch(_ payloads: [[UInt8]]) {
        let start = write
        let first = nextSeq
        var at = start + JournalFormat.recordHeaderBytes + JournalFormat.batchPayloadBytes
        bytes.withUnsafeMutableBytes { raw in
            for p in payloads {
                p.withUnsafeBytes { at += JournalRecordCodec.write(kind: .add, seq: nextSeq, payload: $0, into: raw, at: at) }
                nextSeq += 1
            }
        }
        let size = (at - start + 4095) / 4096 * 4096
        let info = BatchInfo(batchBytes: size, recordCount: payloads.count, durableThrough: durableThrough)
        bytes.withUnsafeMutableBytes { raw in
            info.encode().withUnsafeBytes { _ = JournalRecordCodec.write(kind: .batch, seq: first, payload: $0, into: raw, at: start) }
        }
        batchOffsets.append(start)
        write = start + size
        durableThrough = nextSeq - 1
    }

    func scan(limit: Int? = nil, firstSeq: UInt64 = 1) -> JournalScan {
        bytes.withUnsafeBytes { JournalReplay.scan($0, from: 4096, seq: firstSeq, limit: limit) }
    }
}

func payload(_ i: Int, size: Int = 50) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 * 3 + i) } }

@Suite struct JournalReplayTests {
    /// A clean file replays every record in order and ends at the write position.
    @Test func cleanFileReplaysEverything() {
        var image = JournalImage()
        image.batch([payload(1), payload(2)])
        image.batch([payload(3)])
        let scan = image.scan()
        #expect(scan.records.map(\.payload) == [payload(1), payload(2), payload(3)])
        #expect(scan.ending == .tail(offset: image.write))
        #expect(scan.endOffset == image.write)
        #expect(scan.nextSeq == 4)
    }

    /// A torn last batch, cut at every byte offset of its last record (the rest left as zeros or as the old
    /// bytes of a recycled file), is a tail: replay keeps every earlier batch and never reports corruption.
    @Test func tornTailAtEveryByteOfLastRecord() {
        var image = JournalImage()
        image.batch([payload(1), payload(2)])
        image.batch([payload(3), payload(4, size: 70)])
        let last = image.batchOffsets[1]
        let lastRecordStart = last + JournalFormat.recordHeaderBytes + JournalFormat.batchPayloadBytes
            + JournalFormat.recordHeaderBytes + 50
        let lastRecordEnd = lastRecordStart + JournalFormat.recordHeaderBytes + 70
        for cut in lastRecordStart..<lastRecordEnd {
            for fill in [UInt8(0), 0xA5] {
                var torn = image
                for i in cut..<lastRecordEnd { torn.bytes[i] = fill }
                let scan = torn.scan()
                #expect(scan.records.map(\.payload) == [payload(1), payload(2)], "cut at \(cut) fill \(fill)")
                #expect(scan.ending == .tail(offset: last), "cut at \(cut) fill \(fill)")
            }
        }
    }

    /// A batch whose header was torn (any byte of the header damaged) is the tail too.
    @Test func tornBatchHeader() {
        var image = JournalImage()
        image.batch([payload(1)])
        image.batch([payload(2)])
        let last = image.batchOffsets[1]
        for i in last..<(last + JournalFormat.recordHeaderBytes + JournalFormat.batchPayloadBytes) {
            var torn = image
            torn.bytes[i] ^= 0xFF
            let scan = torn.scan()
            #expect(scan.records.map(\.payload) == [payload(1)], "byte \(i)")
            #expect(scan.ending == .tail(offset: last), "byte \(i)")
        }
    }

    /// A recycled file: new batches overwrite the start, old batches (lower sequence numbers) follow.
    /// Replay takes only the new ones.
    @Test func staleRecordsOfRecycledFileAreIgnored() {
        var old = JournalImage(firstSeq: 1)
        for i in 0..<10 { old.batch([payload(i), payload(i + 100)]) }
        var fresh = JournalImage(firstSeq: 50, fileNumber: 9)
        fresh.batch([payload(50)])
        fresh.batch([payload(51)])
        var recycled = old
        for i in 0..<fresh.write { recycled.bytes[i] = fresh.bytes[i] }
        let scan = recycled.scan(firstSeq: 50)
        #expect(scan.records.map(\.payload) == [payload(50), payload(51)])
        #expect(scan.ending == .tail(offset: fresh.write))
    }

    /// A damaged record in the middle, with later batches recording that it had been synced, is corruption
    /// reported at its batch's offset: never skipped, never taken for the tail.
    @Test func corruptMiddleRecordIsReported() {
        var image = JournalImage()
        for i in 0..<5 { image.batch([payload(i), payload(i + 10)]) }
        let bad = image.batchOffsets[2]
        image.bytes[bad + JournalFormat.recordHeaderBytes + JournalFormat.batchPayloadBytes + 30] ^= 0x01
        let scan = image.scan()
        #expect(scan.records.count == 4)
        guard case .corrupt(let offset, let reason) = scan.ending else {
            Issue.record("expected corruption, got \(scan.ending)")
            return
        }
        #expect(offset == bad)
        #expect(reason.contains("synced"))
    }

    /// Damage before the end recorded by a later file's header is corruption even at the file's last batch.
    @Test func damageBeforeSuccessorLimitIsCorruption() {
        var image = JournalImage()
        image.batch([payload(1)])
        image.batch([payload(2)])
        image.bytes[image.batchOffsets[1] + 40] ^= 0x10
        guard case .corrupt(let offset, _) = image.scan(limit: image.write).ending else {
            Issue.record("expected corruption")
            return
        }
        #expect(offset == image.batchOffsets[1])
    }

    /// The limit from a successor's header stops replay exactly there.
    @Test func successorLimitStopsReplay() {
        var image = JournalImage()
        image.batch([payload(1)])
        let limit = image.write
        image.batch([payload(2)])
        let scan = image.scan(limit: limit)
        #expect(scan.records.map(\.payload) == [payload(1)])
        #expect(scan.ending == .limit)
    }
}
