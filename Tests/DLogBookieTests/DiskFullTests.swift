import DLogTestSupport
@testable import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Logging
import Testing

/// A tmpfs of `bytes` mounted at a new directory (tests run as root, as CI does), unmounted on deinit: a
/// ledger disk that really fills up.
final class SmallDisk: Sendable {
    let path: String
    private let dir: TempDir

    init(bytes: Int) throws {
        dir = TempDir("dlog-small-disk")
        path = dir.sub("mnt")
        try FileSystem.makeDirectory(path)
        try Self.run(["mount", "-t", "tmpfs", "-o", "size=\(bytes)", "tmpfs", path])
    }

    deinit { try? Self.run(["umount", "-l", path]) }

    /// Fills what is left with a file; returns its path.
    func fill() throws -> String {
        let filler = path + "/filler"
        let f = try File.open(filler, [.create, .truncate])
        defer { f.close() }
        let chunk = [UInt8](repeating: 0xAB, count: 64 * 1024)
        var offset: Int64 = 0
        while true {
            do {
                try chunk.withUnsafeBytes { try f.pwriteAll($0, at: offset) }
            } catch let error as SystemError where error.errno == ENOSPC {
                break
            }
            offset += Int64(chunk.count)
        }
        // What pwriteAll left short of a chunk.
        for small in [4096, 512, 1] {
            while (try? [UInt8](repeating: 1, count: small).withUnsafeBytes({ try f.pwriteAll($0, at: offset) })) != nil {
                offset += Int64(small)
            }
        }
        return filler
    }

    static func run(_ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        try p.run()
        let status = p.exitStatusHoldingThread(within: 120)
        guard status == 0 else { throw BenchFailure("\(arguments.joined(separator: " ")) exited \(status.map(String.init) ?? "unseen")") }
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

private func config(_ dir: TempDir, ledgers: String) -> Bookie.Configuration {
    var c = Bookie.Configuration(
        journal: .init(directory: dir.sub("journal"), fileBytes: 2 << 20, filesMax: 4, engine: .blocking),
        journalDirectories: [dir.sub("journal")], storage: .init(ledgerDirectories: [ledgers]))
    c.checkpointInterval = .seconds(3600)
    c.diskCheckInterval = .seconds(3600)  // only ENOSPC itself may turn it read-only here
    // The journal lies on the host's disk: at the default low-water mark (90 %) a host disk that full kept the
    // bookie read-only after the test freed its small one. Only a disk filled to the brim counts here.
    c.diskUsageThreshold = 0.999
    c.diskUsageLowWater = 0.99
    return c
}

private func add(_ b: Bookie, _ ledger: UInt64, _ e: Int64, size: Int = 2000) async -> BookieResponse {
    await withCheckedContinuation { done in
        b.add(masterKey: testKey, entry: entry(ledger, e, size: size, lac: e < 0 ? -1 : e - 1), recovery: false) {
            done.resume(returning: $0)
        }
    }
}

@Suite(.serialized) struct DiskFullTests {
    /// The defect: a bookie whose ledger disk is full could not start (its start-up checkpoint hit ENOSPC and
    /// it exited). Now it starts read-only and serves every acknowledged entry from the journal's replay;
    /// once space is freed, a checkpoint succeeds and it takes adds again.
    @Test func aBookieStartsReadOnlyOnAFullLedgerDisk() async throws {
        let dir = TempDir()
        let disk = try SmallDisk(bytes: 4 << 20)
        let c = config(dir, ledgers: disk.path + "/ledgers")
        do {
            let b = try Bookie(configuration: c, logger: Logger(label: "test"))
            try b.start { Issue.record("journal failed: \($0)") }
            for e in 0..<200 {
                guard case .added = await add(b, 1, Int64(e)) else { Issue.record("add \(e) refused"); break }
            }
            _ = try disk.fill()
            b.stop()  // its last checkpoint fails: the entries stay in the journal only
        }
        let lines = LogLines()
        let b = try Bookie(configuration: c, logger: Logger(label: "test") { _ in lines.handler() })
        try b.start { Issue.record("journal failed: \($0)") }
        defer { b.stop() }
        #expect(b.isReadOnly)
        #expect(b.outOfSpaceReason?.contains("No space left") == true)
        #expect(lines.matching("entering read-only mode: a write found the disk full").count == 1)
        for e in 0..<200 {
            guard case .entry(let bytes) = b.readEntryBlocking(ledger: LedgerID(1), entry: EntryID(Int64(e))) else {
                Issue.record("entry \(e) not served")
                break
            }
            #expect(bytes == entry(1, Int64(e), size: 2000))
        }
        guard case .failed(.readOnly, let message) = await add(b, 1, 200) else {
            Issue.record("add taken on a full disk")
            return
        }
        #expect(message.contains("disk is full"))
        try FileSystem.remove(disk.path + "/filler")
        #expect(b.runCheckpoint() == nil)
        #expect(b.outOfSpaceReason == nil)
        b.checkDisks()  // the usage check found the disk full at start too: it must see the space now
        #expect(!b.isReadOnly)
        guard case .added = await add(b, 1, 200) else { Issue.record("adds not resumed"); return }
    }

    /// ENOSPC on the checkpoint's write path turns the bookie read-only at once, with one clear log line,
    /// without waiting for the periodic usage check (switched off here).
    @Test func enospcTurnsTheBookieReadOnlyAtOnce() async throws {
        let dir = TempDir()
        let disk = try SmallDisk(bytes: 4 << 20)
        let lines = LogLines()
        let b = try Bookie(configuration: config(dir, ledgers: disk.path + "/ledgers"),
                           logger: Logger(label: "test") { _ in lines.handler() })
        try b.start { Issue.record("journal failed: \($0)") }
        defer { b.stop() }
        for e in 0..<50 { _ = await add(b, 2, Int64(e)) }
        let filler = try disk.fill()
        #expect(!b.isReadOnly)
        #expect(b.runCheckpoint() != nil, "the checkpoint must hit ENOSPC")
        #expect(b.isReadOnly)
        #expect(lines.matching("entering read-only mode: a write found the disk full").count == 1)
        guard case .failed(.readOnly, _) = await add(b, 2, 50) else { Issue.record("add taken on a full disk"); return }
        try FileSystem.remove(filler)
        #expect(b.runCheckpoint() == nil)
        #expect(!b.isReadOnly)
        #expect(lines.matching("leaving read-only mode").count == 1)
        for e in 0..<50 { #expect(b.readEntryBlocking(ledger: LedgerID(2), entry: EntryID(Int64(e))).isEntry) }
    }
}

@Suite struct EntryIDTests {
    /// The defect: an ADD with a negative entry id was acknowledged and could never be read back. Now it is
    /// refused with BAD_REQUEST naming the id, and nothing is stored.
    @Test func negativeEntryIDsAreRefused() async throws {
        let dir = TempDir()
        let b = try Bookie(configuration: config(dir, ledgers: dir.sub("ledgers")), logger: Logger(label: "test"))
        try b.start { Issue.record("journal failed: \($0)") }
        defer { b.stop() }
        for id in [Int64(-5), -1, Int64.min] {
            guard case .failed(.badRequest, let message) = await add(b, 7, id) else {
                Issue.record("entry id \(id) was not refused")
                continue
            }
            #expect(message.contains("\(id)"))
        }
        #expect(b.storage.ledgerState(LedgerID(7)) == nil, "a refused add stores nothing")
        guard case .added = await add(b, 7, 0) else { Issue.record("entry 0 refused"); return }
    }
}

extension BookieResponse {
    var isEntry: Bool {
        if case .entry = self { return true }
        return false
    }
}
