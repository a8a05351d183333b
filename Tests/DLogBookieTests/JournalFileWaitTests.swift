@testable import DLogBookie
import DLogTestSupport
import DLogWire
import Foundation
import Synchronization
import Testing

/// A journal asks for a checkpoint once fewer than half its files are free. One that has used all its files
/// waits for a checkpoint to release one: it says so (`isWaitingForFile`, `journalNeedsCheckpoint`), and a
/// release wakes it, with nothing lost meanwhile.
@Suite struct JournalFileWaitTests {
    /// Counts the asks for a checkpoint, and keeps where each sync ended.
    final class AskingSink: JournalSink {
        let asks = Atomic<Int>(0)
        let positions = Mutex<[JournalPosition]>([])
        func journalDidSync(_ records: [JournalRecord], journal: Int, through position: JournalPosition) {
            positions.withLock { $0.append(position) }
        }
        func journalNeedsCheckpoint(journal: Int) { asks.add(1, ordering: .relaxed) }
    }

    /// A checkpoint that ends as soon as it is asked for: it releases everything synced so far.
    final class ReleasingSink: JournalSink {
        let asks = Atomic<Int>(0)
        let last = Mutex<JournalPosition?>(nil)
        let journal = Mutex<Journal?>(nil)
        func journalDidSync(_ records: [JournalRecord], journal: Int, through position: JournalPosition) {
            last.withLock { $0 = position }
        }
        func journalNeedsCheckpoint(journal: Int) {
            asks.add(1, ordering: .relaxed)
            if let mark = last.withLock({ $0 }) { self.journal.withLock { $0 }?.release(through: mark) }
        }
    }

    @Test func aWriterAsksForACheckpointWhileHalfItsFilesAreFree() throws {
        // Proves the ask comes early enough for a checkpoint to free files before the writer needs one: asked
        // only once no file was free, the writer waited for every checkpoint with all adds held.
        let dir = TempDir()
        let journal = try makeJournal(dir.path, engine: .blocking, fileBytes: 64 << 10, filesMax: 4, groupBytes: 16 << 10)
        let sink = ReleasingSink()
        sink.journal.withLock { $0 = journal }
        journal.start(resumeAfter: try replayAll(journal).1.end, releasedBelow: 0, sink: sink, onFatal: { _ in })
        defer { journal.stop() }
        // 40 records of 8 KiB: 320 KiB through four 64 KiB files.
        let results = appendAll(journal, (0 ..< 40).map { record($0, size: 8 << 10) })
        #expect(results.count == 40 && results.allSatisfy { if case .success = $0 { true } else { false } })
        #expect(sink.asks.load(ordering: .relaxed) >= 1)
        #expect(journal.stats.waitsForFreeFile == 0, "the writer ran out of files before it asked for a checkpoint")
    }

    @Test func aWriterShortOfFilesWaitsForAReleaseAndGoesOn() throws {
        let dir = TempDir()
        let journal = try makeJournal(dir.path, engine: .blocking, fileBytes: 64 << 10, filesMax: 2, groupBytes: 16 << 10)
        let sink = AskingSink()
        journal.start(resumeAfter: try replayAll(journal).1.end, releasedBelow: 0, sink: sink, onFatal: { _ in })
        defer { journal.stop() }
        // 40 records of 8 KiB fill two 64 KiB files more than twice over.
        let done = DispatchSemaphore(value: 0)
        let results = Mutex<[Result<Void, JournalError>]>([])
        Thread.detachNewThread {
            let r = appendAll(journal, (0 ..< 40).map { record($0, size: 8 << 10) })
            results.withLock { $0 = r }
            done.signal()
        }
        var waits = 0
        // One release per wait. A writer that waits has synced everything it wrote, so each new wait comes with a
        // new last position; a wait whose position was released is one the writer has not woken from yet.
        // (Waiting for the flag to clear after each release missed a writer that found its file, filled it and
        // waited again between two looks: that wait was never released, and the test hung.)
        // Generous: alone this takes 0.1 s, but under the whole suite's load (daemons zero-filling their journals
        // at start) each of the ~20 syncs and file rolls waits behind gigabytes of writeback: 24 s and over 90 s
        // were seen in one run.
        let deadline = ContinuousClock.now + .seconds(300)
        var releasedThrough: JournalPosition? = nil
        while done.wait(timeout: .now() + .milliseconds(1)) == .timedOut {
            #expect(ContinuousClock.now < deadline, "the appends did not finish")
            guard ContinuousClock.now < deadline else { return }
            guard journal.isWaitingForFile, let last = sink.positions.withLock({ $0.last }), last != releasedThrough else { continue }
            waits += 1
            #expect(sink.asks.load(ordering: .relaxed) > 0, "a waiting writer asks for a checkpoint")
            // What a checkpoint does once everything synced so far is in entry logs.
            journal.release(through: last)
            releasedThrough = last
        }
        #expect(waits >= 1, "the writer never ran short of files")
        #expect(results.withLock { $0.count } == 40)
        #expect(results.withLock { $0.allSatisfy { if case .success = $0 { true } else { false } } })
        #expect(journal.stats.waitsForFreeFile >= waits)
    }
}

@Suite struct JournalBatchBoundTests {
    @Test func recordsQueuedBeforeTheWriterStartsStillFitTheirFiles() throws {
        // Proves a writer that finds many records queued at once (it started late, or the machine stalled it)
        // batches no more than a file holds: it took all 40 into one batch of 320 KiB and wrote it into a
        // 64 KiB file, which grew past its size, and the writer never had to wait for a checkpoint.
        let dir = TempDir()
        let fileBytes = 64 << 10
        let journal = try makeJournal(dir.path, engine: .blocking, fileBytes: fileBytes, filesMax: 2, groupBytes: 16 << 10)
        let replayed = try replayAll(journal).1.end
        let done = DispatchSemaphore(value: 0)
        let results = Mutex<[Result<Void, JournalError>]>([])
        Thread.detachNewThread {
            let r = appendAll(journal, (0 ..< 40).map { record($0, size: 8 << 10) })
            results.withLock { $0 = r }
            done.signal()
        }
        // Every record queued before the writer runs.
        let queuedBy = ContinuousClock.now + .seconds(10)
        while journal.stats.queueDepth < 40 && ContinuousClock.now < queuedBy { usleep(200) }
        #expect(journal.stats.queueDepth == 40)
        let sink = JournalFileWaitTests.AskingSink()
        journal.start(resumeAfter: replayed, releasedBelow: 0, sink: sink, onFatal: { _ in })
        defer { journal.stop() }
        // Generous: alone this takes 0.1 s, but under the whole suite's load (daemons zero-filling their journals
        // at start) each of the ~20 syncs and file rolls waits behind gigabytes of writeback: 24 s and over 90 s
        // were seen in one run.
        let deadline = ContinuousClock.now + .seconds(300)
        var releasedThrough: JournalPosition? = nil
        while done.wait(timeout: .now() + .milliseconds(1)) == .timedOut {
            guard ContinuousClock.now < deadline else {
                Issue.record("the appends did not finish")
                return
            }
            // One release per wait (see `aWriterShortOfFilesWaitsForAReleaseAndGoesOn`).
            guard journal.isWaitingForFile, let last = sink.positions.withLock({ $0.last }), last != releasedThrough else { continue }
            journal.release(through: last)
            releasedThrough = last
        }
        #expect(results.withLock { $0.count == 40 && $0.allSatisfy { if case .success = $0 { true } else { false } } })
        #expect(journal.stats.waitsForFreeFile >= 1, "40 records of 8 KiB fill two 64 KiB files more than twice over")
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".dlj") {
            let size = try FileManager.default.attributesOfItem(atPath: dir.path + "/" + name)[.size] as? Int ?? 0
            #expect(size <= fileBytes, "\(name) grew to \(size) bytes, past the journal's file size")
        }
    }
}
