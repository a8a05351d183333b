import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Synchronization

/// The blocking engine, with `beforeCompletion` called with each completion's count (from 1) before it is
/// reported: a disk that fails (the call throws) or stalls (the call waits) when a test says.
final class InterceptingEngine: WriteSyncEngine {
    let inner = BlockingEngine(syncMode: .fdatasync)
    let name: String
    private var completions = 0
    private let beforeCompletion: (Int) throws(SystemError) -> Void
    init(_ name: String, beforeCompletion: @escaping (Int) throws(SystemError) -> Void) {
        self.name = name
        self.beforeCompletion = beforeCompletion
    }
    var syncMode: SyncMode { .fdatasync }
    var maxInFlight: Int { 1 }
    var inFlight: Int { inner.inFlight }
    func submit(file: any DiskFile, buffer: UnsafeRawPointer, count: Int, offset: Int64, token: UInt64) throws(SystemError) {
        try inner.submit(file: file, buffer: buffer, count: count, offset: offset, token: token)
    }
    func awaitCompletion() throws(SystemError) -> UInt64 {
        let token = try inner.awaitCompletion()
        completions += 1
        try beforeCompletion(completions)
        return token
    }
}

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
                 filesMax: Int = 4, groupBytes: Int = 64 * 1024, inFlight: Int = 1,
                 spin: Duration = .microseconds(50)) throws -> Journal {
    var configuration = Journal.Configuration(
        directory: dir, fileBytes: fileBytes, filesMax: filesMax,
        policy: .init(groupWaitMax: .microseconds(500), bufferedBytesMax: groupBytes, maxInFlight: inFlight),
        queueCountMax: 100_000, queueBytesMax: 64 << 20, engine: engine, syncMode: sync, recordBytesMax: 256 * 1024)
    configuration.spinMax = spin
    return try Journal(index: 0, configuration: configuration)
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
