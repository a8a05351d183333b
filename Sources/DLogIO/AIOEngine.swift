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
    /// Outstanding requests in submission order.
    private var pending: [Pending] = []
    public var inFlight: Int { pending.count }

    private struct Pending {
        var token: UInt64
        var fd: Int32
        var expectedBytes: Int64
        var path: String
        /// Steps still to complete: 1 (the write, or its sync) or 2 (write, then sync).
        var awaiting: Int
        var error: SystemError?
    }

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

    public func submit(file: File, buffer: UnsafeRawPointer, count: Int, offset: Int64,
                       token: UInt64) throws(SystemError) {
        precondition(pending.count < maxInFlight, "too many requests in flight")
        precondition(count > 0 && count <= Int(Int32.max))
        let flags = syncMode == .dsync ? dlog_aio_rwf_dsync() : 0
        let rc = dlog_aio_submit_write(context, file.fd, buffer, UInt32(count), UInt64(offset), flags, token << 1)
        if rc < 0 {
            throw SystemError(call: syncMode == .dsync ? "io_submit(write, RWF_DSYNC)" : "io_submit(write)",
                              path: file.path, errno: -rc)
        }
        pending.append(Pending(token: token, fd: file.fd, expectedBytes: Int64(count), path: file.path,
                               awaiting: syncMode == .fdatasync ? 2 : 1, error: nil))
    }

    public func awaitCompletion() throws(SystemError) -> UInt64 {
        precondition(!pending.isEmpty, "no request outstanding")
        while pending[0].awaiting > 0 {
            var data: UInt64 = 0
            var res: Int64 = 0
            let rc = dlog_aio_next_completion(context, &data, &res)
            if rc < 0 { throw SystemError(call: "io_getevents", path: pending[0].path, errno: -rc) }
            try record(token: data >> 1, isSync: data & 1 == 1, result: res)
        }
        let done = pending.removeFirst()
        if let error = done.error { throw error }
        return done.token
    }

    private func record(token: UInt64, isSync: Bool, result: Int64) throws(SystemError) {
        guard let i = pending.firstIndex(where: { $0.token == token }) else {
            preconditionFailure("completion for unknown journal request \(token)")
        }
        pending[i].awaiting -= 1
        if isSync {
            if result < 0 && pending[i].error == nil {
                pending[i].error = SystemError(call: "fdatasync (AIO)", path: pending[i].path, errno: Int32(-result))
            }
            return
        }
        if result < 0 {
            pending[i].error = SystemError(call: syncMode == .dsync ? "write(RWF_DSYNC)" : "write",
                                           path: pending[i].path, errno: Int32(-result))
        } else if result != pending[i].expectedBytes {
            // A short journal write leaves a hole; treat it like an I/O error rather than resubmitting.
            pending[i].error = SystemError(call: "write (short: \(result) of \(pending[i].expectedBytes))",
                                           path: pending[i].path, errno: EIO)
        }
        guard syncMode == .fdatasync, pending[i].awaiting > 0 else { return }
        if pending[i].error != nil {
            // No sync for a failed write: the batch is already lost.
            pending[i].awaiting = 0
            return
        }
        let rc = dlog_aio_submit_fdsync(context, pending[i].fd, (token << 1) | 1)
        if rc < 0 {
            pending[i].error = SystemError(call: "io_submit(fdatasync)", path: pending[i].path, errno: -rc)
            pending[i].awaiting = 0
        }
    }
}
