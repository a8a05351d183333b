import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Synchronization


/// Collects what the journal made durable.
final class RecordingSink: JournalSink {
    let records = Mutex<[JournalRecord]>([])
    let positions = Mutex<[JournalPosition]>([])
    func journalDidSync(_ records: [JournalRecord], journal: Int, through position: JournalPosition) {
        self.records.withLock { $0 += records }
        positions.withLock { $0.append(position) }
    }
    func journalNeedsCheckpoint(journal: Int) {}
}

/// Engines to run journal tests on: io_uring and libaio where this machine allows them.
let journalEngines: [EngineChoice] = [.blocking] + (URingEngine.probe() == nil ? [.ioUring] : [])
    + (AIOEngine.probe() == nil ? [.libaio] : [])

func makeJournal(_ dir: String, engine: EngineChoice, sync: SyncMode = .fdatasync, fileBytes: Int = 1 << 20,
                 filesMax: Int = 4, groupBytes: Int = 64 * 1024, inFlight: Int = 1) throws -> Journal {
    try Journal(index: 0, configuration: Journal.Configuration(
        directory: dir, fileBytes: fileBytes, filesMax: filesMax,
        policy: .init(groupWaitMax: .microseconds(500), bufferedBytesMax: groupBytes, maxInFlight: inFlight),
        queueCountMax: 100_000, queueBytesMax: 64 << 20, engine: engine, syncMode: sync, recordBytesMax: 256 * 1024))
}

/// Appends records and waits until all are durable; returns their results.
func appendAll(_ journal: Journal, _ records: [JournalRecord]) -> [Result<Void, JournalError>] {
    let results = Mutex<[Int: Result<Void, JournalError>]>([:])
    let group = DispatchGroup()
    for (i, r) in records.enumerated() {
        group.enter()
        if let refusal = journal.append(r, completion: { result in
            results.withLock { $0[i] = result }
            group.leave()
        }) {
            results.withLock { $0[i] = .failure(refusal) }
            group.leave()
        }
    }
    group.wait()
    return results.withLock { r in (0..<records.count).map { r[$0]! } }
}

func record(_ i: Int, size: Int = 100) -> JournalRecord {
    JournalRecord(kind: .add, payload: EntryCodec.encode(
        EntryHeader(ledger: LedgerID(1), entry: EntryID(Int64(i)), lastAddConfirmed: EntryID(Int64(i) - 1),
                    ledgerLength: 0),
        payload: (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ i) }))
}

func replayAll(_ journal: Journal, from mark: JournalPosition? = nil,
               truncate: Bool = false) throws -> ([[UInt8]], ReplaySummary) {
    var out: [[UInt8]] = []
    let summary = try journal.replay(from: mark, truncateCorrupt: truncate) { _, payload in out.append(payload) }
    return (out, summary)
}
