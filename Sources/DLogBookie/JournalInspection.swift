import DLogIO
import DLogWire

/// What a stopped bookie's journal directory holds, read only: each file's header, its batches and records
/// with their CRCs checked, and where and why its readable part ends (`dlogctl inspect journal`).
public enum JournalInspection {
    public struct File: Codable, Sendable, Equatable {
        public var path: String
        public var slot: Int
        public var bytes: Int
        /// nil: no intact header (a pre-written file never used, or a damaged header).
        public var fileNumber: UInt64?
        public var firstSeq: UInt64?
        /// The sequence of the last intact record.
        public var lastSeq: UInt64?
        public var batches = 0
        public var records = 0
        /// Records by kind: add, master_key, fence, explicit_lac, delete.
        public var kinds: [String: Int] = [:]
        /// Distinct ledgers the records name.
        public var ledgers = 0
        /// Where the intact batches end.
        public var endOffset = 0
        /// How the readable part ends, in words.
        public var ending: String
        /// A batch that had been synced fails its checks: the bookie refuses to start on this journal.
        public var damaged = false
    }

    public struct Report: Codable, Sendable, Equatable {
        public var directory: String
        public var files: [File]
    }

    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads every journal file of `directory`. Throws only when the directory cannot be read or holds no journal
    /// file; a damaged file is described in its report.
    public static func inspect(directory: String, disk: any Disk = PosixDisk()) throws -> Report {
        guard disk.exists(directory) else { throw Refusal(description: "\(directory) does not exist") }
        let journal = JournalDirectory(path: directory, fileBytes: 2 * JournalFormat.headerBytes, filesMax: 2, disk: disk)
        let slots: [(slot: Int, header: JournalFileHeader?)]
        do { slots = try journal.slots() } catch {
            throw Refusal(description: "cannot list \(directory): \(error)")
        }
        guard !slots.isEmpty else {
            throw Refusal(description: "\(directory) holds no journal file (journal-NNNN.dlj): is it a bookie's journal directory?")
        }
        // Where each file's part of the chain ends: the next file's header says so.
        var limits: [UInt64: Int64] = [:]
        for case let (_, header?) in slots where header.fileNumber > 0 {
            limits[header.previousFileNumber] = header.previousEndOffset
        }
        var files: [File] = []
        for (slot, header) in slots {
            let path = journal.slotPath(slot)
            files.append(try inspect(path: path, slot: slot, header: header,
                                     limit: header.flatMap { limits[$0.fileNumber] }.map(Int.init), disk: disk))
        }
        files.sort { ($0.fileNumber ?? 0, $0.slot) < ($1.fileNumber ?? 0, $1.slot) }
        return Report(directory: directory, files: files)
    }

    private static func inspect(path: String, slot: Int, header: JournalFileHeader?, limit: Int?,
                                disk: any Disk) throws -> File {
        let bytes: [UInt8]
        do {
            let file = try disk.open(path, [.readOnly])
            defer { file.close() }
            bytes = try file.read(count: Int(try file.size()), at: 0)
        } catch {
            throw Refusal(description: "cannot read \(path): \(error)")
        }
        var report = File(path: path, slot: slot, bytes: bytes.count, ending: "")
        guard let header else {
            report.ending = bytes.prefix(JournalFormat.headerBytes).allSatisfy { $0 == 0 }
                ? "unused (pre-written, no header yet)" : "no intact header (not a journal file of this version, or damaged)"
            report.damaged = !bytes.prefix(JournalFormat.headerBytes).allSatisfy { $0 == 0 }
            return report
        }
        report.fileNumber = header.fileNumber
        report.firstSeq = header.firstSeq
        guard bytes.count >= JournalFormat.headerBytes else {
            report.ending = "file of \(bytes.count) bytes is shorter than its header"
            report.damaged = true
            return report
        }
        let scan = bytes.withUnsafeBytes { JournalReplay.scan($0, from: JournalFormat.headerBytes, seq: header.firstSeq, limit: limit) }
        report.batches = scan.batches
        report.records = scan.records.count
        report.lastSeq = scan.records.isEmpty ? nil : scan.nextSeq &- 1
        report.endOffset = scan.endOffset
        var ledgers = Set<UInt64>()
        for record in scan.records {
            report.kinds[record.kind.inspectionName, default: 0] += 1
            if record.payload.count >= 8 {
                ledgers.insert(record.payload.withUnsafeBytes { $0.loadBigEndian(UInt64.self, at: 0) })
            }
        }
        report.ledgers = ledgers.count
        switch scan.ending {
        case .limit:
            report.ending = limit.map { "ends at offset \($0), where the next file's header says this one ends" }
                ?? "ends with the file"
        case .tail(let offset) where bytes[offset...].allSatisfy({ $0 == 0 }):
            report.ending = "writing stopped at offset \(offset) (the rest of the file was never written)"
        case .tail(let offset):
            report.ending = "torn or stale tail at offset \(offset) (a write cut short, or older records of a reused file): "
                + "nothing from there was acknowledged"
        case .corrupt(let offset, let reason):
            report.ending = "damaged at offset \(offset): \(reason)"
            report.damaged = true
        }
        return report
    }
}

extension JournalRecordKind {
    var inspectionName: String {
        switch self {
        case .batch: "batch"
        case .add: "add"
        case .masterKey: "master_key"
        case .fence: "fence"
        case .explicitLAC: "explicit_lac"
        case .delete: "delete"
        }
    }
}
