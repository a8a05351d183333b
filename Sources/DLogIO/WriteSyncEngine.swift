/// How a journal batch is made durable.
public enum SyncMode: String, Sendable, CaseIterable {
    /// Buffered write, then fdatasync (linked in one submission on io_uring).
    case fdatasync
    /// O_DIRECT write with RWF_DSYNC: the write returns once the data is on stable storage.
    case dsync
}

/// Which engine carries journal I/O.
public enum EngineChoice: String, Sendable, CaseIterable {
    case auto
    case ioUring = "io_uring"
    case libaio
    case blocking
}

/// Writes a batch at an offset and makes it durable, possibly asynchronously. Owned by one thread.
///
/// Completions come back in submission order, each naming the token it was submitted with.
public protocol WriteSyncEngine: AnyObject {
    /// "io_uring", "libaio" or "blocking", for logs and GET_INFO.
    var name: String { get }
    var syncMode: SyncMode { get }
    /// Requests that may be outstanding at once.
    var maxInFlight: Int { get }
    var inFlight: Int { get }
    /// Starts writing `count` bytes at `offset` of `file` and making them durable. The ring engines need a
    /// descriptor (a `PosixFile`); the blocking engine in `.fdatasync` mode takes any `DiskFile`.
    func submit(file: any DiskFile, buffer: UnsafeRawPointer, count: Int, offset: Int64, token: UInt64) throws(SystemError)
    /// Waits for the oldest outstanding request. Returns its token, or throws the error of its write or sync.
    func awaitCompletion() throws(SystemError) -> UInt64
}

extension SyncMode {
    /// Options the journal must open its files with for this mode.
    public var fileOptions: File.Options { self == .dsync ? [.direct] : [] }
}

extension PosixFile {
    /// The file of a journal engine that needs a descriptor. Any other `DiskFile` here is a bug in the caller:
    /// a simulated disk goes with the blocking engine.
    static func descriptor(_ file: any DiskFile, engine: String) -> File {
        guard let posix = file as? PosixFile else {
            preconditionFailure("the \(engine) engine needs a file of the real disk, got \(type(of: file)) for \(file.path)")
        }
        return posix.file
    }
}
