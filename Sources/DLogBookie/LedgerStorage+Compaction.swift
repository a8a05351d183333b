import DLogIO
import DLogWire
import Foundation

extension LedgerStorage {
    public struct CompactionResult: Sendable, Equatable {
        public var compactedFile: UInt64
        public var newFile: UInt64?
        public var liveBytes: Int
        public var reclaimedBytes: Int
    }

    /// The entry log with the smallest live fraction below `threshold`, if any.
    public func compactionCandidate(threshold: Double) -> UInt64? {
        ledgers.catalog.withLock { s in
            s.manifest.entryLogs
                .filter { $0.liveFraction < threshold }
                .min { $0.liveFraction < $1.liveFraction }?.id
        }
    }

    /// Copies the live entries of one mostly-dead entry log into a new file and removes the old one.
    /// Reads are paced to `bytesPerSecond` so the copy never competes hard with foreground I/O. It runs on its
    /// own thread without holding the checkpoint lock, so adds and checkpoints go on meanwhile; ledgers
    /// deleted during the copy are left out when it is published.
    public func compact(_ id: UInt64, bytesPerSecond: Int, shouldStop: () -> Bool = { false }) throws -> CompactionResult? {
        precondition(bytesPerSecond > 0)
        guard let (info, since) = ledgers.compactionStarted(id) else { return nil }
        defer { ledgers.flushEnded() }
        // Through the storage's readers: a damaged index is rebuilt first, as for a read.
        guard let reader = try openReader(id) else { return nil }
        var pacer = Pacer(bytesPerSecond: bytesPerSecond, clock: configuration.clock)
        var copied = 0
        var live: [(LedgerID, EntryID, [UInt8])] = []
        for (ledger, entry, offset, length) in try reader.rows() {
            guard let range = info.ledgers[ledger], entry >= range.first, entry <= range.last,
                  ledgers.exists(ledger) else { continue }
            if shouldStop() { return nil }
            let bytes = try reader.readBytes(offset: offset, length: length)
            _ = try EntryCodec.validate(bytes)  // never copy damage forward silently
            live.append((LedgerID(ledger), EntryID(entry), bytes))
            copied += length
            pacer.spent(length)
        }
        let newID: UInt64? = live.isEmpty ? nil : ledgers.catalog.withLock { $0.takeEntryLogID() }
        var newInfo: EntryLogInfo? = nil
        if let newID {
            let dir = Int(newID % UInt64(configuration.ledgerDirectories.count))
            newInfo = try EntryLogWriter.write(id: newID, directoryIndex: dir,
                                               directory: configuration.ledgerDirectories[dir], entries: live,
                                               disk: configuration.disk)
        }
        try checkpointLock.withLock { store in
            _ = try persist(&store) { every in
                var copy = newInfo
                if var written = copy {
                    // Ledgers deleted during the copy are not live in it, even if created anew since.
                    written.ledgers = written.ledgers.keeping { every.stillLive($0, since: since) }
                    copy = written
                }
                every.catalog.pointee.compacted(info, into: copy)
            }
        }
        return CompactionResult(compactedFile: id, newFile: newID, liveBytes: copied,
                                reclaimedBytes: info.totalBytes - (newInfo?.totalBytes ?? 0))
    }
}
