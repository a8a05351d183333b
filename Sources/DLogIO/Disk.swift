/// Every file and directory call the storage makes, as one seam: `PosixDisk` makes them on the real file
/// system; `SimulatedDisk` (module DLogSimulation) keeps files in memory, tells durable from pending bytes and
/// directory entries, and can crash, tear writes and fail calls on purpose. One contract test suite runs
/// against both (DiskContractTests), so the simulation behaves like the real thing wherever no fault is
/// injected.
///
/// What is durable, on both: a file's bytes once `dataSync` or `sync` of it returned; a name (create, rename,
/// remove, a new directory) once `syncDirectory` of the directory holding it returned. `makeDirectory` syncs
/// each parent it adds to, and `writeAtomically` syncs the file and its directory, so both are durable when
/// they return.
///
/// Errors are `SystemError`s naming the call and the path, with the errno a real file system gives:
/// `ENOENT` for a missing file or directory, `EEXIST` for an exclusive create of an existing one, `EIO` for
/// a failed write or sync, `ENOSPC` for a full disk.
public protocol Disk: Sendable {
    /// Opens `path` read-write (read-only with `.readOnly`); `.create` makes it if missing, `.exclusive` with
    /// it refuses an existing file, `.truncate` empties it. `.direct` and `.dsync` are hints a simulation
    /// ignores.
    func open(_ path: String, _ options: File.Options) throws(SystemError) -> any DiskFile
    /// Creates a directory and any missing parents, each made durable (its parent synced). An existing
    /// directory is no error.
    func makeDirectory(_ path: String) throws(SystemError)
    /// Makes the names in the directory `path` durable: creates, renames and removes done in it so far.
    func syncDirectory(_ path: String) throws(SystemError)
    /// Renames a file, replacing `to` if it exists.
    func rename(_ from: String, _ to: String) throws(SystemError)
    /// A second name for a file (a hard link); EEXIST if `new` exists.
    func link(_ existing: String, _ new: String) throws(SystemError)
    /// Removes a file's name; a missing file is no error. An open handle keeps reading the file.
    func remove(_ path: String) throws(SystemError)
    func exists(_ path: String) -> Bool
    /// Names in the directory, sorted, without "." and "..".
    func list(_ directory: String) throws(SystemError) -> [String]
    /// Size and free space of the file system holding `path`.
    func usage(of path: String) throws(SystemError) -> FileSystem.Usage
}

/// An open file of a `Disk`. Positioned reads and writes may come from several threads; each call is whole.
public protocol DiskFile: Sendable {
    var path: String { get }
    /// Writes all of `bytes` at `offset`; a gap past the end reads as zeros.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError)
    /// Reads up to `buffer.count` bytes at `offset`; fewer only at the end of the file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int
    /// Makes the file's bytes durable (fdatasync).
    func dataSync() throws(SystemError)
    /// Makes the file's bytes and attributes durable (fsync).
    func sync() throws(SystemError)
    func size() throws(SystemError) -> Int64
    func truncate(to length: Int64) throws(SystemError)
    /// Reserves `offset ..< offset + length`, growing the file to its end if shorter (fallocate, mode 0).
    func allocate(offset: Int64, length: Int64) throws(SystemError)
    func close()
}

extension DiskFile {
    public func write(_ bytes: [UInt8], at offset: Int64) throws(SystemError) {
        var result: Result<Void, SystemError> = .success(())
        bytes.withUnsafeBytes { raw in result = Result { () throws(SystemError) in try write(raw, at: offset) } }
        try result.get()
    }

    /// Up to `count` bytes at `offset`: fewer only at the end of the file.
    public func read(count: Int, at offset: Int64) throws(SystemError) -> [UInt8] {
        precondition(count >= 0 && offset >= 0)
        var result: Result<Int, SystemError> = .success(0)
        // Not zeroed first: the read fills it, and zeroing a hundred-megabyte ledger index cost its load time.
        let out = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            result = Result { () throws(SystemError) in try read(into: UnsafeMutableRawBufferPointer(buffer), at: offset) }
            initialized = (try? result.get()) ?? 0
        }
        let got = try result.get()
        assert(got <= count)
        return out
    }
}

extension Disk {
    /// Writes a small file atomically: a temporary file, synced, renamed over `path`, then the directory
    /// synced. After a crash `path` holds either the old bytes or the new ones, never a mix.
    public func writeAtomically(_ path: String, _ bytes: [UInt8]) throws(SystemError) {
        let tmp = path + ".tmp"
        let file = try open(tmp, [.create, .truncate])
        do {
            try file.write(bytes, at: 0)
            try file.sync()
        } catch {
            file.close()
            throw error
        }
        file.close()
        try rename(tmp, path)
        try syncDirectory(FileSystem.parent(of: path))
    }

    public func readAll(_ path: String) throws(SystemError) -> [UInt8] {
        let file = try open(path, [.readOnly])
        defer { file.close() }
        return try file.read(count: Int(try file.size()), at: 0)
    }
}
