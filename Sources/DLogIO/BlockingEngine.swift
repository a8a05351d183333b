import CDLogSys

/// pwrite + fdatasync (or O_DIRECT pwritev2 with RWF_DSYNC) on the calling thread. The fallback where
/// io_uring is unavailable; it works everywhere.
public final class BlockingEngine: WriteSyncEngine {
    public let name = "blocking"
    public let syncMode: SyncMode
    public let maxInFlight = 1
    public private(set) var inFlight = 0
    private var completed: Result<UInt64, SystemError>? = nil

    public init(syncMode: SyncMode) { self.syncMode = syncMode }

    public func submit(file: any DiskFile, buffer: UnsafeRawPointer, count: Int, offset: Int64,
                       token: UInt64) throws(SystemError) {
        precondition(inFlight == 0, "blocking engine has one request at a time")
        inFlight = 1
        completed = Result { () throws(SystemError) -> UInt64 in
            switch syncMode {
            case .fdatasync:
                try file.write(UnsafeRawBufferPointer(start: buffer, count: count), at: offset)
                try file.dataSync()
            case .dsync:
                let file = PosixFile.descriptor(file, engine: name)
                let n = dlog_pwritev2(file.fd, buffer, count, offset, dlog_rwf_dsync())
                if n < 0 { throw SystemError(call: "pwritev2(RWF_DSYNC)", path: file.path, errno: Int32(-n)) }
                if Int(n) != count { throw SystemError(call: "pwritev2(RWF_DSYNC) short", path: file.path, errno: 5) }
            }
            return token
        }
    }

    public func awaitCompletion() throws(SystemError) -> UInt64 {
        precondition(inFlight == 1, "no request outstanding")
        inFlight = 0
        let result = completed!
        completed = nil
        return try result.get()
    }
}
