#if canImport(Glibc)
import Glibc
#endif
import CDLogSys

/// An open file descriptor with the calls the storage layer makes, each mapping errno to a `SystemError`
/// that names the file. Not thread-safe by itself; positioned I/O (pread/pwrite) may be shared.
public struct File: Sendable {
    public let fd: Int32
    public let path: String

    public struct Options: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let create = Options(rawValue: O_CREAT)
        public static let exclusive = Options(rawValue: O_EXCL)
        public static let readOnly = Options(rawValue: 1 << 30)  // our marker; mapped below
        public static let direct = Options(rawValue: dlog_o_direct())
        public static let dsync = Options(rawValue: dlog_o_dsync())
        public static let truncate = Options(rawValue: O_TRUNC)
    }

    public static func open(_ path: String, _ options: Options = [], mode: mode_t = 0o644) throws(SystemError) -> File {
        var flags = options.rawValue & ~Options.readOnly.rawValue
        flags |= options.contains(.readOnly) ? O_RDONLY : O_RDWR
        flags |= O_CLOEXEC
        let fd = try retrying("open", path) { Glibc.open(path, flags, mode) }
        return File(fd: fd, path: path)
    }

    public func close() { _ = Glibc.close(fd) }

    /// Writes all of `bytes` at `offset`, looping over short writes.
    public func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = try retrying("pwrite", path) {
                Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
            precondition(n > 0, "pwrite returned 0")
            done += n
        }
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try retrying("pread", path) {
                Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    public func pread(count: Int, at offset: Int64) throws(SystemError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var result: Result<Int, SystemError> = .success(0)
        out.withUnsafeMutableBytes { raw in result = Result { () throws(SystemError) in try pread(into: raw, at: offset) } }
        out.removeLast(count - (try result.get()))
        return out
    }

    public func fdatasync() throws(SystemError) {
        _ = try retrying("fdatasync", path) { Glibc.fdatasync(fd) }
    }

    public func fsync() throws(SystemError) {
        _ = try retrying("fsync", path) { Glibc.fsync(fd) }
    }

    public func size() throws(SystemError) -> Int64 {
        var st = stat()
        _ = try retrying("fstat", path) { Glibc.fstat(fd, &st) }
        return Int64(st.st_size)
    }

    public func truncate(to length: Int64) throws(SystemError) {
        _ = try retrying("ftruncate", path) { Glibc.ftruncate(fd, off_t(length)) }
    }

    /// Reserves `offset ..< offset + length`, growing the file to its end if shorter (fallocate, mode 0).
    public func allocate(offset: Int64, length: Int64) throws(SystemError) {
        let rc = dlog_fallocate(fd, offset, length)
        if rc < 0 { throw SystemError(call: "fallocate", path: path, errno: -rc) }
    }

    /// Drops cached pages of a range we will not read again soon.
    public func dropCache(offset: Int64, length: Int64) {
        _ = posix_fadvise(fd, off_t(offset), off_t(length), Int32(POSIX_FADV_DONTNEED))
    }
}
