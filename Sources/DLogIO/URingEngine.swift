import CDLogURing
#if canImport(Glibc)
import Glibc
#endif

/// io_uring: a write linked to an fdatasync in one submission (`.fdatasync`), or one O_DIRECT write with
/// RWF_DSYNC (`.dsync`). The caller's thread keeps filling the next batch while the kernel works.
public final class URingEngine: WriteSyncEngine {
    public let name = "io_uring"
    public let syncMode: SyncMode
    public let maxInFlight: Int
    private let ring: OpaquePointer
    private var pending = PendingRequests()
    public var inFlight: Int { pending.count }

    /// Sets up a ring. Throws with the errno when the kernel or a seccomp filter refuses io_uring.
    public init(syncMode: SyncMode, maxInFlight: Int = 1) throws(SystemError) {
        precondition(maxInFlight >= 1 && maxInFlight <= 64)
        var err: Int32 = 0
        guard let r = dlog_uring_create(UInt32(maxInFlight * 2), &err) else {
            throw SystemError(call: "io_uring_queue_init", path: "journal ring", errno: err)
        }
        ring = r
        self.syncMode = syncMode
        self.maxInFlight = maxInFlight
    }

    deinit { dlog_uring_destroy(ring) }

    /// Whether io_uring can be used here, and if not, why (errno of the refused setup).
    public static func probe() -> SystemError? {
        if let text = try? FileSystem.readAll("/proc/sys/kernel/io_uring_disabled"),
           let first = text.first, first != UInt8(ascii: "0") {
            return SystemError(call: "io_uring (kernel.io_uring_disabled=\(Character(UnicodeScalar(first))))",
                               path: "/proc/sys/kernel/io_uring_disabled", errno: EPERM)
        }
        do {
            _ = try URingEngine(syncMode: .fdatasync)
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
        let slot = token << 1
        switch syncMode {
        case .fdatasync:
            try check(dlog_uring_queue_write(ring, file.fd, buffer, UInt32(count), UInt64(offset), 0, 1, slot), file)
            try check(dlog_uring_queue_fsync(ring, file.fd, 1, 0, slot | 1), file)
        case .dsync:
            try check(dlog_uring_queue_write(ring, file.fd, buffer, UInt32(count), UInt64(offset),
                                             dlog_uring_rwf_dsync(), 0, slot), file)
        }
        let submitted = dlog_uring_submit(ring)
        if submitted < 0 { throw SystemError(call: "io_uring_submit", path: file.path, errno: -submitted) }
        pending.add(token: token, file: file, bytes: count, steps: syncMode == .fdatasync ? 2 : 1)
    }

    public func awaitCompletion() throws(SystemError) -> UInt64 {
        precondition(pending.count > 0, "no request outstanding")
        while !pending.oldestIsComplete {
            var data: UInt64 = 0
            var res: Int32 = 0
            let rc = dlog_uring_next_completion(ring, 1, &data, &res)
            if rc < 0 { throw SystemError(call: "io_uring_wait_cqe", path: pending.oldestPath, errno: -rc) }
            if data & 1 == 1 {
                pending.syncCompleted(token: data >> 1, result: Int64(res), call: "fdatasync")
            } else {
                // A linked sync after a failed write completes too (cancelled), so nothing is abandoned here.
                _ = pending.writeCompleted(token: data >> 1, result: Int64(res),
                                           call: syncMode == .dsync ? "write(RWF_DSYNC)" : "write")
            }
        }
        return try pending.takeOldest()
    }

    private func check(_ rc: Int32, _ file: File) throws(SystemError) {
        if rc < 0 { throw SystemError(call: "io_uring_get_sqe", path: file.path, errno: -rc) }
    }
}
