import DLogWire
import NIOPosix

/// The copies a replication worker makes to and from the bookie it runs beside, served in process: a copy through
/// this bookie's own socket paid for encoding every byte into a frame, the kernel's two copies of it and decoding
/// it again, on the same two cores the copy is short of.
extension Bookie {
    /// READ_RANGE, ADD and ADD_BATCH, answered as the server answers them; nil for any other request (it goes over
    /// the network). No access check: the caller is this bookie's own process.
    public func serveInProcess(_ request: BookieRequest) async -> BookieResponse? {
        switch request {
        case .readRange(let ledger, let first, let last, let maxBytes):
            readsReceived.add(1, ordering: .relaxed)
            // It reads the disk: on a thread pool, as the server runs it, never on the caller's executor.
            return try? await NIOThreadPool.singleton.runIfActive {
                self.readRange(ledger: ledger, first: first, last: last, maxBytes: maxBytes)
            }
        case .add(let key, let entry, let recovery):
            addsReceived.add(1, ordering: .relaxed)
            return await withCheckedContinuation { answer in
                add(masterKey: key, entry: entry, recovery: recovery) { answer.resume(returning: $0) }
            }
        case .addBatch(let key, let entries, let recovery):
            addsReceived.add(UInt64(entries.count), ordering: .relaxed)
            return await withCheckedContinuation { answer in
                addBatch(masterKey: key, entries: entries, recovery: recovery) { answer.resume(returning: $0) }
            }
        default:
            return nil
        }
    }
}
