@testable import DLogBookie
import DLogTestSupport
import Logging
import Testing

@Suite struct MemoryReturnTests {
    /// A checkpoint that flushed entries arms the return of freed memory; the first checkpoint after it that
    /// finds nothing to do (the adds stopped) returns it, once; busy checkpoints never do.
    @Test func aQuietCheckpointAfterFlushingReturnsMemory() throws {
        let dir = TempDir()
        var config = Bookie.Configuration(journal: .init(directory: dir.sub("journal"), fileBytes: 4 << 20, filesMax: 4),
                                          journalDirectories: [dir.sub("journal")],
                                          storage: .init(ledgerDirectories: [dir.sub("ledgers")]))
        config.checkpointInterval = .seconds(3600)
        func armed(_ b: Bookie) -> Bool { b.flushedSinceTrim.load(ordering: .relaxed) }
        let bookie = try Bookie(configuration: config, logger: Logger(label: "test"))
        try bookie.start { _ in }
        defer { bookie.stop() }
        #expect(bookie.runCheckpoint() == nil)
        #expect(!armed(bookie), "nothing flushed yet")
        bookie.storage.apply([keyRecord(1), addRecord(1, 0)], journal: 0, through: nil)
        #expect(bookie.runCheckpoint() == nil)
        #expect(armed(bookie), "a flush arms it")
        bookie.storage.apply([addRecord(1, 1)], journal: 0, through: nil)
        #expect(bookie.runCheckpoint() == nil)
        #expect(armed(bookie), "a busy checkpoint keeps it armed")
        #expect(bookie.runCheckpoint() == nil)
        #expect(!armed(bookie), "the quiet checkpoint returned the memory")
    }
}
