import DLogMetadata
import DLogWire

/// Truncation (by the application) and retention (by age) of a log's segments. Both change only completed
/// segments, by compare-and-set; a truncation point inside the open segment is handed to the writer's core,
/// which records it when the segment is completed.
extension LogWriter {
    /// Marks everything before `dlsn` as truncated: earlier completed segments whole, and the part of `dlsn`'s
    /// segment before it. Readers skip truncated data; retention deletes truncated segments. Truncation only
    /// moves forward, and never touches data after `dlsn`. Inside this writer's open segment it is recorded when
    /// the segment is completed.
    public func truncate(before dlsn: DLSN) async throws {
        handle(.truncate(before: dlsn))
        for (segment, _) in try await namespace.segments(name) where segment.sequence <= dlsn.segment {
            try await truncate(segment.sequence, before: dlsn)
        }
    }

    /// Truncates one completed segment by compare-and-set, reading it again after a lost race (retention may
    /// have deleted it: then there is nothing left to do).
    private func truncate(_ sequence: Int64, before dlsn: DLSN) async throws {
        let key = LogKeys.segment(name, sequence)
        for _ in 0..<8 {
            guard let item = try await store.get(key) else { return }
            let segment: LogSegment
            do { segment = try LogSegmentCodec.decode(item.value) } catch { throw LogError.damaged(name, "\(key): \(error)") }
            guard segment.state == .completed else { return }
            var changed = segment
            if sequence < dlsn.segment {
                guard segment.truncation != .truncated else { return }
                changed.truncation = .truncated
            } else {
                guard dlsn > DLSN(segment: sequence, entry: 0, slot: 0) else { return }
                switch segment.truncation {
                case .truncated: return
                case .partiallyTruncated(let earlier) where earlier >= dlsn: return
                default: changed.truncation = .partiallyTruncated(minActive: dlsn)
                }
            }
            do {
                _ = try await store.put(key, value: LogSegmentCodec.encode(changed), ifVersion: item.version)
                return
            } catch MetadataError.versionConflict {
                continue
            }
        }
        throw LogError.busy(name, "segment \(sequence) kept changing while it was being truncated; try again")
    }

    /// Deletes completed segments that are truncated, or older than the retention age, with their ledgers. The
    /// newest segment always stays: it carries the log's position and record count forward.
    public func applyRetention() async throws {
        let segments = try await namespace.segments(name)
        let cutoff = options.retentionAge.map { Namespace.now - Int64($0.components.seconds * 1000) }
        for (segment, version) in segments.dropLast() where segment.state == .completed {
            let expired = cutoff.map { segment.completionTime < $0 } ?? false
            guard segment.truncation == .truncated || expired else { continue }
            try await namespace.deleteSegment(name, segment, version: version)
        }
    }
}
