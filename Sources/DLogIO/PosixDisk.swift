#if canImport(Glibc)
import Glibc
#endif
import CDLogSys

/// The real file system behind the `Disk` seam: each call is the system call `File` and `FileSystem` make.
/// The journal's engines (io_uring, libaio, blocking) stay behind `WriteSyncEngine` and take a `File`.
public struct PosixDisk: Disk {
    public init() {}

    public func open(_ path: String, _ options: File.Options) throws(SystemError) -> any DiskFile {
        PosixFile(file: try File.open(path, options))
    }

    public func makeDirectory(_ path: String) throws(SystemError) { try FileSystem.makeDirectory(path) }
    public func syncDirectory(_ path: String) throws(SystemError) { try FileSystem.syncDirectory(path) }
    public func rename(_ from: String, _ to: String) throws(SystemError) { try FileSystem.rename(from, to) }
    public func link(_ existing: String, _ new: String) throws(SystemError) { try FileSystem.link(existing, new) }
    public func remove(_ path: String) throws(SystemError) { try FileSystem.remove(path) }
    public func exists(_ path: String) -> Bool { FileSystem.exists(path) }
    public func list(_ directory: String) throws(SystemError) -> [String] { try FileSystem.list(directory) }
    public func usage(of path: String) throws(SystemError) -> FileSystem.Usage { try FileSystem.usage(of: path) }
}

/// A `File` as a `DiskFile`.
public struct PosixFile: DiskFile {
    public let file: File
    public var path: String { file.path }
    public init(file: File) { self.file = file }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError) {
        try file.pwriteAll(bytes, at: offset)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        try file.pread(into: buffer, at: offset)
    }

    public func dataSync() throws(SystemError) { try file.fdatasync() }
    public func sync() throws(SystemError) { try file.fsync() }
    public func size() throws(SystemError) -> Int64 { try file.size() }
    public func truncate(to length: Int64) throws(SystemError) { try file.truncate(to: length) }
    public func allocate(offset: Int64, length: Int64) throws(SystemError) { try file.allocate(offset: offset, length: length) }
    public func close() { file.close() }
}
