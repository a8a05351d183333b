import DLogLedger
import DLogMetadata
import DLogWire

/// Completing the in-progress segment an earlier writer left behind, before a new writer appends: its ledger
/// is recovered (which fences that writer out) and its end read from the last entry.
enum SegmentRecovery {
    /// Recovers the ledger of an in-progress segment (fencing its writer) and completes the segment at the
    /// recovered end, read from its last entry.
    static func recover(_ name: String, _ segment: LogSegment, version: Version,
                        namespace: Namespace) async throws -> LogSegment {
        let password = namespace.options.ledgerPassword
        var done = segment
        done.state = .completed
        done.completionTime = Namespace.now
        let closed: LedgerMetadata?
        do {
            closed = try await LedgerRecovery(pool: namespace.pool).recover(segment.ledger, password: password)
        } catch LedgerError.noSuchLedger {
            // Its writer failed between creating the segment's record and using the ledger (or the ledger was
            // removed after an unclear commit): the segment holds nothing.
            closed = nil
        } catch let error as LedgerError {
            throw LogError.ledger(name, error)
        }
        if let closed, closed.lastEntry.rawValue >= 0 {
            let reader = try await LedgerReader.open(segment.ledger, password: password, pool: namespace.pool)
            let batch: RecordBatch.Decoded
            do {
                batch = try RecordBatch.decode(try await reader.read(closed.lastEntry))
            } catch let error as RecordBatch.Malformed {
                throw LogError.damaged(name, "segment \(segment.sequence), \(closed.lastEntry): \(error)")
            }
            done.lastEntry = closed.lastEntry.rawValue
            done.lastSlot = Int64(batch.records.count - 1)
            done.lastTxID = batch.records.last!.txid
            done.recordCount = batch.firstPosition + Int64(batch.records.count)
            done.endOfStream = batch.records.last!.isEndOfStream
        }
        do {
            _ = try await namespace.store.put(LogKeys.segment(name, segment.sequence), value: LogSegmentCodec.encode(done),
                                              ifVersion: version)
        } catch MetadataError.versionConflict {
            throw LogError.ownershipLost(name, "segment \(segment.sequence) changed while it was being recovered")
        }
        return done
    }
}
