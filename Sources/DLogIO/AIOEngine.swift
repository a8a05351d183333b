import CAIO  // only for its `link "aio"`: Swift autolinks what a module map names
import CDLogAIO
#if canImport(Glibc)
import Glibc
#endif

/// Linux native AIO (libaio), for hosts whose seccomp profile or sysctl refuses io_uring but allows
/// io_setup/io_submit. `.dsync`: one O_DIRECT write with RWF_DSYNC, durable when it completes. `.fdatasync`:
/// the write, then an asynchronous fdatasync submitted as soon as the write completes (native AIO cannot
/// link the two). Completions are waited for in io_getevents, never polled.
public final class AIOEngine: WriteSyncEngine {
    public let name = "libaio"
    public let syncMode: SyncMode
    public let maxInFlight: Int
    private let context: OpaquePointer
    private var pending = PendingRequests()
    public var inFlight: Int { pending.count }

    /// Sets up an AIO context. Throws with the errno when the kernel or a seccomp filter refuses native AIO.
    public init(syncMode: SyncMode, maxInFlight: Int = 1) throws(SystemError) {
        precondition(maxInFlight >= 1 && maxInFlight <= 64)
        var err: Int32 = 0
        // Room for a write and its sync per batch.
        guard let c = dlog_aio_create(UInt32(maxInFlight * 2), &err) else {
            throw SystemError(call: "io_setup", path: "journal AIO context", errno: err)
        }
        context = c
        self.syncMode = syncMode
        self.maxInFlight = maxInFlight
    }

    deinit { dlog_aio_destroy(context) }

    /// Whether native AIO can be used here, and if not, why (errno of the refused io_setup).
    public static func probe() -> SystemError? {
        do {
            _ = try AIOEngine(syncMode: .fdatasync)
            return nil
        } catch {
            return error
        }
    }

    public func submit(file: any DiskFile, buffer: UnsafeRawPointer, count: Int, offset: Int64,
                       token: UInt64) throws(SystemError) {
        let file = PosixFile.descriptor(file, engine: name)
        precondition(pending.count < maxInFlight, "too many requests in flight")
        precondition(count > 0 && count <= Int(Int32.max))
        let flags = syncMode == .dsync ? dlog_aio_rwf_dsync() : 0
        let rc = dlog_aio_submit_write(context, file.fd, buffer, UInt32(count), UInt64(offset), flags, token << 1)
        if rc < 0 {
            throw SystemError(call: syncMode == .dsync ? "io_submit(write, RWF_DSYNC)" : "io_submit(write)",
                              path: file.path, errno: -rc)
        }
        pending.add(token: token, file: file, bytes: count, steps: syncMode == .fdatasync ? 2 : 1)
    }

    public func awaitCompletion() throws(SystemError) -> UInt64 {
        precondition(pending.count > 0, "no request outstanding")
        while !pending.oldestIsComplete {
            var data: UInt64 = 0
            var res: Int64 = 0
            let rc = dlog_aio_next_completion(context, &data, &res)
            if rc < 0 { throw SystemError(call: "io_getevents", path: pending.oldestPath, errno: -rc) }
            let token = data >> 1
            if data & 1 == 1 {
                pending.syncCompleted(token: token, result: res, call: "fdatasync (AIO)")
            } else if let written = pending.writeCompleted(token: token, result: res,
                                                           call: syncMode == .dsync ? "write(RWF_DSYNC)" : "write") {
                // The write is in: its sync goes now, as its own request (native AIO cannot link them).
                let rc = dlog_aio_submit_fdsync(context, written.fd, (token << 1) | 1)
                if rc < 0 {
                    pending.abandon(token: token, error: SystemError(call: "io_submit(fdatasync)", path: written.path, errno: -rc))
                }
            } else {
                // A failed write gets no sync: the batch is already lost.
                pending.abandon(token: token, error: nil)
            }
        }
        return try pending.takeOldest()
    }
}
