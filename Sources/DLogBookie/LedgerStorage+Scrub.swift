import DLogIO
import DLogWire
import Foundation

/// Scrub: a background re-read of every stored entry, checking each CRC, so damage (a flipped bit, a bad
/// sector) is found and repaired from another replica before anyone needs the entry (docs/recovery.md).
extension LedgerStorage {
    /// A stored entry whose bytes fail their CRC (or name another entry), and where it lies.
    public struct DamagedEntry: Sendable, Hashable {
        public var ledger: LedgerID
        public var entry: EntryID
        public var path: String
        public var offset: Int64
    }

    /// How far a scrub pass has come.
    public struct ScrubProgress: Sendable {
        public var filesTotal = 0
        public var filesDone = 0
        public var bytesTotal: Int64 = 0
        public var bytesDone: Int64 = 0
        public var entriesChecked = 0
        public var damaged: [DamagedEntry] = []
        public init() {}
    }

    /// Re-reads every live entry of every entry-log file the manifest lists (as of the start), paced to
    /// `bytesPerSecond`, and returns the damaged ones. An entry superseded by a newer copy (a repair wrote one)
    /// is not reported. `report` is called after each file. Blocking: run it on its own thread.
    public func scrub(bytesPerSecond: Int, shouldStop: () -> Bool = { false },
                      report: (ScrubProgress) -> Void = { _ in }) throws -> ScrubProgress {
        precondition(bytesPerSecond > 0)
        let files = ledgers.catalog.withLock { $0.manifest.entryLogs }
        var progress = ScrubProgress()
        progress.filesTotal = files.count
        progress.bytesTotal = files.reduce(0) { $0 + Int64($1.totalBytes) }
        var pacer = Pacer(bytesPerSecond: bytesPerSecond, clock: configuration.clock)
        for info in files {
            if shouldStop() { break }
            // Compacted or removed since the list was taken: its live entries are in another file now.
            guard let reader = try openReader(info.id) else {
                progress.filesDone += 1
                continue
            }
            for (ledger, entry, offset, length) in try reader.rows() {
                guard let range = info.ledgers[ledger], entry >= range.first, entry <= range.last,
                      ledgers.exists(ledger) else { continue }
                if shouldStop() { break }
                let bytes = try reader.readBytes(offset: offset, length: length)
                progress.bytesDone += Int64(length)
                progress.entriesChecked += 1
                let intact = (try? EntryCodec.validate(bytes)).map { $0.ledger.rawValue == ledger && $0.entry.rawValue == entry } ?? false
                if !intact && !superseded(LedgerID(ledger), EntryID(entry), in: info.id) {
                    progress.damaged.append(DamagedEntry(ledger: LedgerID(ledger), entry: EntryID(entry), path: reader.path,
                                                         offset: offset))
                }
                pacer.spent(length)
            }
            progress.filesDone += 1
            report(progress)
        }
        return progress
    }

    /// Whether a read of (ledger, entry) is answered from somewhere newer than file `id`: the write cache or
    /// a later file (reads search newest first), as after a repair.
    func superseded(_ ledger: LedgerID, _ entry: EntryID, in id: UInt64) -> Bool {
        switch readCached(ledger, entry).1 {
        case .found: return true
        case .onDisk(let files): return files.first != id
        case .noLedger, .noEntry: return true
        }
    }
}
