import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Testing

@Suite struct JournalTests {
    /// Every acknowledged record comes back from replay, in order, on every engine and sync mode, with one
    /// or two batches in flight, across several file rolls.
    @Test(arguments: journalEngines.flatMap { e in SyncMode.allCases.flatMap { s in [1, 2].map { (e, s, $0) } } })
    func appendThenReplay(engine: EngineChoice, sync: SyncMode, inFlight: Int) throws {
        let dir = TempDir()
        let records = (0..<3000).map { record($0, size: 100 + ($0 * 37) % 900) }
        let journal = try makeJournal(dir.path, engine: engine, sync: sync, filesMax: 8, inFlight: inFlight)
        let sink = RecordingSink()
        journal.start(resumeAfter: try replayAll(journal).1.end, releasedBelow: 0, sink: sink, onFatal: { _ in })
        let results = appendAll(journal, records)
        #expect(results.allSatisfy { (try? $0.get()) != nil })
        journal.stop()
        #expect(sink.records.withLock { $0.map(\.payload) } == records.map(\.payload))
        let stats = journal.stats
        #expect(stats.recordsSynced == UInt64(records.count))
        #expect(stats.syncs > 0 && stats.syncs <= UInt64(records.count))
        #expect(stats.engine == engine.rawValue)

        let reopened = try makeJournal(dir.path, engine: engine, sync: sync, filesMax: 8, inFlight: inFlight)
        let (replayed, summary) = try replayAll(reopened)
        #expect(replayed == records.map(\.payload))
        #expect(summary.records == records.count)
    }

    /// Writing resumes after a restart in a new file chained to the old one; replay sees both runs, and a
    /// replay from the first run's end sees only the second.
    @Test(arguments: journalEngines)
    func restartChainsFiles(engine: EngineChoice) throws {
        let dir = TempDir()
        let first = (0..<50).map { record($0) }
        let second = (50..<120).map { record($0) }
        var j = try makeJournal(dir.path, engine: engine)
        j.start(resumeAfter: try replayAll(j).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        _ = appendAll(j, first)
        j.stop()
        j = try makeJournal(dir.path, engine: engine)
        let (afterFirst, summary1) = try replayAll(j)
        #expect(afterFirst == first.map(\.payload))
        j.start(resumeAfter: summary1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        _ = appendAll(j, second)
        j.stop()
        j = try makeJournal(dir.path, engine: engine)
        #expect(try replayAll(j).0 == (first + second).map(\.payload))
        #expect(try replayAll(j, from: summary1.end).0 == second.map(\.payload))
    }

    /// Damage inside synced data stops replay with the file and offset; the operator flag cuts there, and
    /// the cut holds on later restarts.
    @Test(arguments: journalEngines)
    func corruptMiddleRefusesThenTruncates(engine: EngineChoice) throws {
        let dir = TempDir()
        var j = try makeJournal(dir.path, engine: engine, groupBytes: 4096)
        j.start(resumeAfter: try replayAll(j).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        for i in 0..<40 { _ = appendAll(j, [record(i, size: 3000)]) }  // one batch each
        j.stop()
        // Damage a record in the 10th batch of the first file.
        let path = dir.path + "/journal-0000.dlj"
        let f = try File.open(path)
        let offset = Int64(4096 * 10 + 100)
        var byte = try f.pread(count: 1, at: offset)
        byte[0] ^= 0xFF
        try byte.withUnsafeBytes { try f.pwriteAll($0, at: offset) }
        f.close()

        j = try makeJournal(dir.path, engine: engine, groupBytes: 4096)
        do {
            _ = try replayAll(j)
            Issue.record("replay of a corrupt journal succeeded")
        } catch let error as JournalCorruption {
            #expect(error.file == path)
            #expect(error.offset == 4096 * 10)
            #expect("\(error)".contains("--journal-truncate-corrupt"))
        }
        let (kept, summary) = try replayAll(j, truncate: true)
        #expect(kept == (0..<9).map { record($0, size: 3000).payload })
        #expect(summary.truncatedAt != nil)
        j.start(resumeAfter: summary.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        _ = appendAll(j, [record(1000)])
        j.stop()
        j = try makeJournal(dir.path, engine: engine, groupBytes: 4096)
        #expect(try replayAll(j).0 == (0..<9).map { record($0, size: 3000).payload } + [record(1000).payload])
    }

    /// A torn tail in a file the engine wrote: the last batch half written (its second half still the
    /// pre-written zeros) ends replay at that batch; everything before it comes back, and appends continue.
    @Test(arguments: journalEngines)
    func tornTailOfAnEnginesFile(engine: EngineChoice) throws {
        let dir = TempDir()
        var j = try makeJournal(dir.path, engine: engine, sync: .dsync, groupBytes: 4096)
        j.start(resumeAfter: try replayAll(j).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        for i in 0..<20 { _ = appendAll(j, [record(i, size: 7000)]) }  // one two-block batch each
        j.stop()
        // The 20th batch starts at 4096 + 19 × 8192: zero its second block, as a torn write leaves it.
        let path = dir.path + "/journal-0000.dlj"
        let f = try File.open(path)
        let zeros = [UInt8](repeating: 0, count: 4096)
        try zeros.withUnsafeBytes { try f.pwriteAll($0, at: Int64(4096 + 19 * 8192 + 4096)) }
        f.close()
        j = try makeJournal(dir.path, engine: engine, sync: .dsync, groupBytes: 4096)
        let (kept, summary) = try replayAll(j)
        #expect(kept == (0..<19).map { record($0, size: 7000).payload })
        j.start(resumeAfter: summary.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        _ = appendAll(j, [record(500)])
        j.stop()
        j = try makeJournal(dir.path, engine: engine, sync: .dsync, groupBytes: 4096)
        #expect(try replayAll(j).0 == (0..<19).map { record($0, size: 7000).payload } + [record(500).payload])
    }

    /// Many writers at once: each record's completion runs exactly once and the journal batches them.
    @Test(arguments: journalEngines)
    func concurrentAppendsAreBatched(engine: EngineChoice) throws {
        let dir = TempDir()
        let j = try makeJournal(dir.path, engine: engine, fileBytes: 4 << 20, inFlight: 2)
        j.start(resumeAfter: try replayAll(j).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        let total = 8 * 500
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            let results = appendAll(j, (0..<500).map { record(t * 500 + $0) })
            #expect(results.allSatisfy { (try? $0.get()) != nil })
        }
        j.stop()
        let stats = j.stats
        #expect(stats.recordsSynced == UInt64(total))
        #expect(stats.syncs < UInt64(total), "group commit should put several records in one sync")
        #expect(stats.flushesByQueueEmpty + stats.flushesByBytes + stats.flushesByMaxWait == stats.syncs)
    }

    /// A full queue refuses at once with back-pressure rather than growing without bound.
    @Test func fullQueueRefuses() throws {
        let dir = TempDir()
        let j = try Journal(index: 0, configuration: .init(directory: dir.path, fileBytes: 1 << 20, filesMax: 2,
                                                           queueCountMax: 3, engine: .blocking))
        // Not started: nothing drains the queue.
        for i in 0..<3 { #expect(j.append(record(i), completion: nil) == nil) }
        #expect(j.append(record(4), completion: nil) == .queueFull)
        #expect(j.stats.rejectedQueueFull == 1)
    }
}

@Suite struct JournalMarkTests {
    /// A checkpoint mark taken where replay ended (even on a first start, before any file existed) is a
    /// valid start for the next replay, with or without records written after it.
    @Test func markAtReplayEndIsValid() throws {
        let dir = TempDir()
        var j = try makeJournal(dir.path, engine: .blocking)
        let empty = try replayAll(j).1.end
        j.start(resumeAfter: empty, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        j.stop()
        j = try makeJournal(dir.path, engine: .blocking)
        let (none, s1) = try replayAll(j, from: empty)
        #expect(none.isEmpty)
        j.start(resumeAfter: s1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        _ = appendAll(j, [record(1), record(2)])
        j.stop()
        j = try makeJournal(dir.path, engine: .blocking)
        #expect(try replayAll(j, from: empty).0 == [record(1).payload, record(2).payload])
        #expect(try replayAll(j, from: s1.end).0 == [record(1).payload, record(2).payload])
    }

    /// A mark naming a file that is gone is refused, naming the directory.
    @Test func markInMissingFileIsRefused() throws {
        let dir = TempDir()
        var j = try makeJournal(dir.path, engine: .blocking)
        j.start(resumeAfter: try replayAll(j).1.end, releasedBelow: 0, sink: RecordingSink(), onFatal: { _ in })
        _ = appendAll(j, [record(1)])
        j.stop()
        j = try makeJournal(dir.path, engine: .blocking)
        #expect(throws: JournalCorruption.self) {
            try replayAll(j, from: JournalPosition(fileNumber: 0, offset: 8192, nextSeq: 5))
        }
    }
}
