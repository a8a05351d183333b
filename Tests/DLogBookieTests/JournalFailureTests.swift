import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Synchronization
import Testing

@Suite struct JournalFailureTests {
    /// A failed sync is never retried: the records of that batch and everything after fail, later appends
    /// are refused, and the fatal handler runs once with the reason.
    @Test func failedSyncStopsAcknowledging() throws {
        let dir = TempDir()
        var config = Journal.Configuration(directory: dir.path, fileBytes: 1 << 20, filesMax: 2, engine: .blocking)
        // The third completion reports EIO from fdatasync, as a failing disk would.
        config.makeEngine = {
            InterceptingEngine("failing") { (n: Int) throws(SystemError) in
                if n == 3 { throw SystemError(call: "fdatasync", path: "injected", errno: EIO) }
            }
        }
        let j = try Journal(index: 0, configuration: config)
        let fatal = Mutex<[String]>([])
        j.start(resumeAfter: try replayAll(j).1.end, releasedBelow: 0, sink: RecordingSink(),
                onFatal: { why in fatal.withLock { $0.append(why) } })
        var results: [Result<Void, JournalError>] = []
        for i in 0..<6 { results += appendAll(j, [record(i)]) }  // one batch each
        #expect(results[0...1].allSatisfy { (try? $0.get()) != nil })
        for r in results[2...] {
            guard case .failure(.failed(let why)) = r else {
                Issue.record("expected failure, got \(r)")
                continue
            }
            #expect(why.contains("fdatasync") && why.contains("injected"))
        }
        #expect(j.append(record(9), completion: nil) != nil)
        j.stop()
        #expect(fatal.withLock { $0.count } == 1)
        #expect(j.stats.failed != nil)
        // What was acknowledged is still there on replay.
        let reopened = try makeJournal(dir.path, engine: .blocking)
        #expect(Array(try replayAll(reopened).0.prefix(2)) == [record(0).payload, record(1).payload])
    }
}
