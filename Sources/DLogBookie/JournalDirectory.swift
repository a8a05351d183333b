import DLogIO
import DLogWire

/// The pool of journal files in one directory: creating them pre-written, reading their headers, and
/// replaying the chain from a checkpoint mark.
struct JournalDirectory: Sendable {
    let path: String
    let fileBytes: Int
    let filesMax: Int
    let disk: any Disk

    init(path: String, fileBytes: Int, filesMax: Int, disk: any Disk = PosixDisk()) {
        precondition(fileBytes >= 2 * JournalFormat.headerBytes && fileBytes % JournalFormat.alignment == 0)
        precondition(filesMax >= 2)
        self.path = path
        self.fileBytes = fileBytes
        self.filesMax = filesMax
        self.disk = disk
    }

    func slotPath(_ slot: Int) -> String {
        let digits = String(slot)
        return path + "/journal-" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits + ".dlj"
    }

    /// Slots that exist on disk, each with its header when intact.
    func slots() throws(SystemError) -> [(slot: Int, header: JournalFileHeader?)] {
        var out: [(Int, JournalFileHeader?)] = []
        for name in try disk.list(path) where name.hasPrefix("journal-") && name.hasSuffix(".dlj") {
            guard let slot = Int(name.dropFirst(8).dropLast(4)) else { continue }
            out.append((slot, try readHeader(slot)))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    func readHeader(_ slot: Int) throws(SystemError) -> JournalFileHeader? {
        let f = try disk.open(slotPath(slot), [.readOnly])
        defer { f.close() }
        let bytes = try f.read(count: JournalFormat.headerBytes, at: 0)
        return bytes.withUnsafeBytes { JournalFileHeader.decode($0) }
    }

    /// Creates a slot file filled with zeros by writing them (not fallocate), then syncs it and the directory.
    func create(slot: Int) throws(SystemError) {
        let tmp = slotPath(slot) + ".new"
        let f = try disk.open(tmp, [.create, .truncate])
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        do {
            var offset = 0
            while offset < fileBytes {
                let n = min(chunk.count, fileBytes - offset)
                var result: Result<Void, SystemError> = .success(())
                chunk.withUnsafeBytes { raw in
                    result = Result { () throws(SystemError) in
                        try f.write(UnsafeRawBufferPointer(rebasing: raw[0..<n]), at: Int64(offset))
                    }
                }
                try result.get()
                offset += n
            }
            try f.sync()
        } catch {
            f.close()
            try? disk.remove(tmp)  // a half-written slot must not hold the space it got
            throw error
        }
        f.close()
        try disk.rename(tmp, slotPath(slot))
        try disk.syncDirectory(path)
    }
}

/// Why a journal cannot be replayed.
public struct JournalCorruption: Error, CustomStringConvertible {
    public var file: String
    public var offset: Int
    public var reason: String
    public var description: String {
        "journal file \(file) is corrupt at offset \(offset): \(reason). Acknowledged data may be damaged; "
            + "restore the disk, or start once with --journal-truncate-corrupt to discard everything from there on"
    }
}

/// What replay found: where writing resumes and how much was read.
public struct ReplaySummary: Sendable {
    /// End of the last valid batch; the next file's header records it.
    public var end: JournalPosition
    public var records: Int
    public var bytes: Int
    /// Set when the operator flag cut the journal at a corrupt batch.
    public var truncatedAt: String?
}

extension JournalDirectory {
    /// Replays every record after `mark` in order, calling `apply` for each, and `onFile` as each file of the
    /// chain (the Nth of how many) starts.
    func replay(from mark: JournalPosition?, truncateCorrupt: Bool, onFile: (_ index: Int, _ files: Int) -> Void = { _, _ in },
                apply: (JournalScan.Record) -> Void) throws -> ReplaySummary {
        let headers = try slots().compactMap { s in s.header.map { (slot: s.slot, header: $0) } }
        guard let newest = headers.max(by: { $0.header.fileNumber < $1.header.fileNumber }) else {
            return ReplaySummary(end: mark ?? JournalPosition(fileNumber: 0, offset: Int64(JournalFormat.headerBytes),
                                                              nextSeq: 1), records: 0, bytes: 0)
        }
        // Walk back from the newest file through the previous-file links, down to the mark's file.
        // Links must go strictly down, so damaged headers cannot make this loop.
        var chain = [newest]
        while let first = chain.first, first.header.previousFileNumber != 0,
              first.header.previousFileNumber < first.header.fileNumber, chain.count <= headers.count,
              mark.map({ first.header.fileNumber > $0.fileNumber }) ?? true,
              let previous = headers.first(where: { $0.header.fileNumber == first.header.previousFileNumber }) {
            chain.insert(previous, at: 0)
        }
        if let mark, mark.offset < Int64(JournalFormat.headerBytes) || mark.offset > Int64(fileBytes)
            || mark.offset % Int64(JournalFormat.alignment) != 0 {
            throw JournalCorruption(file: path, offset: Int(mark.offset),
                                    reason: "the checkpoint mark (\(mark)) is not a valid journal position")
        }
        var start = mark ?? JournalPosition(fileNumber: chain[0].header.fileNumber,
                                            offset: Int64(JournalFormat.headerBytes), nextSeq: chain[0].header.firstSeq)
        if let mark, chain[0].header.fileNumber != mark.fileNumber {
            // The mark may sit at the very end of a file that held nothing more (or never existed, on a
            // first start): then the next file's header points exactly at it, and replay starts there.
            let first = chain[0].header
            guard first.fileNumber > mark.fileNumber, first.previousFileNumber == mark.fileNumber,
                  first.previousEndOffset == mark.offset, first.firstSeq == mark.nextSeq else {
                throw JournalCorruption(file: slotPath(chain[0].slot), offset: 0,
                                        reason: "the checkpoint mark (\(mark)) is in a journal file that is missing "
                                            + "from \(path)")
            }
            start = JournalPosition(fileNumber: first.fileNumber, offset: Int64(JournalFormat.headerBytes),
                                    nextSeq: first.firstSeq)
        }
        var summary = ReplaySummary(end: start, records: 0, bytes: 0)
        for (i, link) in chain.enumerated() {
            let successor = i + 1 < chain.count ? chain[i + 1].header : nil
            let start = i == 0 ? Int(summary.end.offset) : JournalFormat.headerBytes
            // A file may start past where the previous one ended (after a truncation, see below), never before.
            if i > 0 && link.header.firstSeq < summary.end.nextSeq {
                throw JournalCorruption(file: slotPath(link.slot), offset: 0,
                                        reason: "file starts at sequence \(link.header.firstSeq) but the previous "
                                            + "file ends at \(summary.end.nextSeq)")
            }
            if i > 0 { summary.end.nextSeq = link.header.firstSeq }
            onFile(i, chain.count)
            let bytes = try disk.readAll(slotPath(link.slot))
            let scan = bytes.withUnsafeBytes { raw in
                JournalReplay.scan(raw, from: start, seq: summary.end.nextSeq,
                                   limit: successor.map { Int($0.previousEndOffset) })
            }
            for r in scan.records { apply(r) }
            summary.records += scan.records.count
            summary.bytes += scan.endOffset - start
            summary.end = JournalPosition(fileNumber: link.header.fileNumber, offset: Int64(scan.endOffset),
                                          nextSeq: scan.nextSeq)
            if case .corrupt(let offset, let reason) = scan.ending {
                guard truncateCorrupt else {
                    throw JournalCorruption(file: slotPath(link.slot), offset: offset, reason: reason)
                }
                summary.truncatedAt = "\(slotPath(link.slot)) offset \(offset): \(reason)"
                // What was cut (in this file and later ones) keeps its sequence numbers on disk. Writing resumes
                // past all of them, so none can ever pass for a newer batch or a continuation.
                summary.end.nextSeq = max(summary.end.nextSeq, try highestSequence())
                break
            }
        }
        return summary
    }

    /// One past the highest sequence number held by any intact batch in any file of the directory.
    func highestSequence() throws -> UInt64 {
        var highest: UInt64 = 0
        for (slot, _) in try slots() {
            let bytes = try disk.readAll(slotPath(slot))
            bytes.withUnsafeBytes { raw in
                var at = JournalFormat.headerBytes
                while at + JournalFormat.recordHeaderBytes <= raw.count {
                    if let head = JournalRecordCodec.read(raw, at: at), let info = BatchInfo.decode(head) {
                        highest = max(highest, head.seq &+ UInt64(info.recordCount))
                    }
                    at += JournalFormat.alignment
                }
            }
        }
        return highest
    }
}
