import DLogIO
import DLogWire

/// The outcome of scanning one journal file: the records it holds from a start position, and why it ended.
struct JournalScan {
    enum Ending: Equatable {
        /// Reached the limit set by the next file's header, or a clean end.
        case limit
        /// Torn or stale tail at this offset: nothing at or after it was ever acknowledged.
        case tail(offset: Int)
        /// A batch that had been synced is damaged.
        case corrupt(offset: Int, reason: String)
    }

    struct Record {
        var kind: JournalRecordKind
        var payload: [UInt8]
    }

    var records: [Record] = []
    /// Batches (group commits) read intact.
    var batches = 0
    var endOffset: Int
    var nextSeq: UInt64
    var ending: Ending
}

enum JournalReplay {
    /// Scans `file` (a whole journal file) from `offset`, expecting sequence number `seq` next.
    /// `limit`: where the next file's header says this one ends (nil for the newest file).
    static func scan(_ file: UnsafeRawBufferPointer, from offset: Int, seq: UInt64, limit: Int?) -> JournalScan {
        precondition(offset >= JournalFormat.headerBytes && offset % JournalFormat.alignment == 0)
        var result = JournalScan(endOffset: offset, nextSeq: seq, ending: .limit)
        var position = offset
        var expected = seq
        let end = min(limit ?? file.count, file.count)
        while position < end {
            switch checkBatch(file, at: position, seq: expected) {
            case .success(let batch):
                result.records.append(contentsOf: batch.records)
                result.batches += 1
                expected &+= UInt64(batch.records.count)
                position += batch.bytes
                result.endOffset = position
                result.nextSeq = expected
            case .failure(let reason):
                result.ending = classify(file, badOffset: position, seq: expected, hasSuccessor: limit != nil,
                                         reason: reason.reason)
                return result
            }
        }
        if let limit, position != limit {
            result.ending = .corrupt(offset: position, reason: "file ends at \(position) but the next file's "
                                         + "header says it ends at \(limit)")
        }
        return result
    }

    private struct Batch {
        var records: [JournalScan.Record]
        var bytes: Int
    }

    private struct BadBatch: Error {
        var reason: String
    }

    private static func checkBatch(_ file: UnsafeRawBufferPointer, at offset: Int,
                                   seq: UInt64) -> Result<Batch, BadBatch> {
        guard let head = JournalRecordCodec.read(file, at: offset), let info = BatchInfo.decode(head) else {
            return .failure(BadBatch(reason: "no valid batch header"))
        }
        guard head.seq == seq else {
            return .failure(BadBatch(reason: "batch sequence \(head.seq), expected \(seq)"))
        }
        guard offset + info.batchBytes <= file.count else {
            return .failure(BadBatch(reason: "batch of \(info.batchBytes) bytes runs past the end of the file"))
        }
        let batch = UnsafeRawBufferPointer(rebasing: file[offset..<(offset + info.batchBytes)])
        var records: [JournalScan.Record] = []
        records.reserveCapacity(min(info.recordCount, info.batchBytes / JournalFormat.recordHeaderBytes))
        var at = head.totalBytes
        for i in 0..<info.recordCount {
            guard let r = JournalRecordCodec.read(batch, at: at) else {
                return .failure(BadBatch(reason: "record \(i) at offset \(offset + at) fails its CRC or is cut off"))
            }
            guard r.seq == seq &+ UInt64(i), let kind = JournalRecordKind(rawValue: r.kind), kind != .batch else {
                return .failure(BadBatch(reason: "record \(i) at offset \(offset + at) has sequence \(r.seq) or "
                                             + "kind \(r.kind), not what its batch announces"))
            }
            records.append(JournalScan.Record(kind: kind, payload: Array(r.payload)))
            at += r.totalBytes
        }
        return .success(Batch(records: records, bytes: info.batchBytes))
    }

    /// The decision table for a batch that does not check out (see JournalFormat).
    static func classify(_ file: UnsafeRawBufferPointer, badOffset: Int, seq: UInt64, hasSuccessor: Bool,
                         reason: String) -> JournalScan.Ending {
        if hasSuccessor {
            return .corrupt(offset: badOffset, reason: reason + "; a later journal file exists, so this batch "
                                + "had been synced")
        }
        var probe = badOffset + JournalFormat.alignment
        while probe + JournalFormat.recordHeaderBytes <= file.count {
            // Only a batch record of a later sequence can answer, so its length, kind and sequence fields are
            // looked at before its CRC: a recycled file is full of older records, and checking each one's CRC
            // (or a CRC over whatever length stale bytes claim) made this probe most of a restart's time.
            if Int(file.loadBigEndian(UInt32.self, at: probe)) == JournalFormat.batchPayloadBytes,
               file[probe + 16] == JournalRecordKind.batch.rawValue, file.loadBigEndian(UInt64.self, at: probe + 8) > seq,
               let head = JournalRecordCodec.read(file, at: probe), let info = BatchInfo.decode(head),
               head.seq > seq, info.durableThrough >= seq {
                return .corrupt(offset: badOffset, reason: reason + "; the batch at offset \(probe) (sequence "
                                    + "\(head.seq)) records that sequence \(seq) had been synced")
            }
            probe += JournalFormat.alignment
        }
        return .tail(offset: badOffset)
    }
}
