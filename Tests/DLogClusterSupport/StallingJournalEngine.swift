import DLogIO
import Glibc
import Synchronization

/// Whether a bookie's journal syncs stall, set from the test while the bookie runs.
public final class JournalStall: Sendable {
    private let on = Atomic(false)
    public init() {}
    public func begin() { on.store(true, ordering: .releasing) }
    /// Must come before the bookie stops: stopping joins the journal thread, which waits while the stall lasts.
    public func end() { on.store(false, ordering: .releasing) }
    var isOn: Bool { on.load(ordering: .acquiring) }
}

/// A journal engine (the blocking one, fdatasync) whose syncs do not complete while its `JournalStall` is on:
/// a bookie whose disk has fallen behind. It still takes requests; only their durability, and so the answers
/// to its adds, wait.
public final class StallingJournalEngine: WriteSyncEngine {
    private let stall: JournalStall
    private let inner = BlockingEngine(syncMode: .fdatasync)

    public init(_ stall: JournalStall) {
        self.stall = stall
    }

    public var name: String { "stalling" }
    public var syncMode: SyncMode { .fdatasync }
    public var maxInFlight: Int { 1 }
    public var inFlight: Int { inner.inFlight }

    public func submit(file: any DiskFile, buffer: UnsafeRawPointer, count: Int, offset: Int64, token: UInt64) throws(SystemError) {
        try inner.submit(file: file, buffer: buffer, count: count, offset: offset, token: token)
    }

    public func awaitCompletion() throws(SystemError) -> UInt64 {
        let token = try inner.awaitCompletion()
        while stall.isOn { usleep(1_000) }
        return token
    }
}
