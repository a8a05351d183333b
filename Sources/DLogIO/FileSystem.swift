#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Directory and file-system calls the storage layer needs, with errors that name the path.
public enum FileSystem {
    /// Creates a directory and any missing parents. Each directory it creates is made durable (its parent
    /// is fsynced), so a file later synced inside it cannot vanish with its directory in a power cut.
    public static func makeDirectory(_ path: String) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            let parent = prefix.isEmpty ? "/" : prefix
            prefix += "/" + part
            if Glibc.mkdir(prefix, 0o755) == 0 {
                try syncDirectory(parent)
            } else if Glibc.errno != EEXIST {
                throw SystemError(call: "mkdir", path: prefix, errno: Glibc.errno)
            }
        }
    }

    /// fsync of a directory, so a create, rename or unlink in it survives a crash.
    public static func syncDirectory(_ path: String) throws(SystemError) {
        let fd = try retrying("open", path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { Glibc.close(fd) }
        _ = try retrying("fsync", path) { Glibc.fsync(fd) }
        syncedDirectories.withLock { counts in
            if counts.count >= syncedDirectoriesMax && counts[path] == nil { counts.removeAll(keepingCapacity: true) }
            counts[path, default: 0] += 1
        }
    }

    /// How often `path` was synced as a directory by this process (counts for at most
    /// `syncedDirectoriesMax` paths are kept at once): what lets a test check that a create, rename or unlink
    /// was made durable, which no file content can show.
    public static func directorySyncs(_ path: String) -> Int { syncedDirectories.withLock { $0[path] ?? 0 } }
    public static let syncedDirectoriesMax = 4096
    private static let syncedDirectories = Mutex<[String: Int]>([:])

    public static func rename(_ from: String, _ to: String) throws(SystemError) {
        _ = try retrying("rename", "\(from) -> \(to)") { Glibc.rename(from, to) }
    }

    /// A second name for a file (a hard link), in the same file system.
    public static func link(_ existing: String, _ new: String) throws(SystemError) {
        _ = try retrying("link", "\(existing) -> \(new)") { Glibc.link(existing, new) }
    }

    public static func remove(_ path: String) throws(SystemError) {
        if Glibc.unlink(path) != 0 && Glibc.errno != ENOENT {
            throw SystemError(call: "unlink", path: path, errno: Glibc.errno)
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Names in a directory, without "." and "..".
    public static func list(_ path: String) throws(SystemError) -> [String] {
        guard let dir = opendir(path) else { throw SystemError(call: "opendir", path: path, errno: Glibc.errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The device a path lives on (st_dev), to warn when journal and ledger share a disk.
    public static func device(of path: String) throws(SystemError) -> UInt64 {
        var st = stat()
        _ = try retrying("stat", path) { () -> Int32 in stat(path, &st) }
        return UInt64(st.st_dev)
    }

    public struct Usage: Sendable, Equatable {
        public var totalBytes: UInt64
        public var freeBytes: UInt64
        public init(totalBytes: UInt64, freeBytes: UInt64) {
            self.totalBytes = totalBytes
            self.freeBytes = freeBytes
        }
        public var usedFraction: Double {
            totalBytes == 0 ? 0 : Double(totalBytes - freeBytes) / Double(totalBytes)
        }
    }

    public static func usage(of path: String) throws(SystemError) -> Usage {
        var s = statvfs()
        _ = try retrying("statvfs", path) { () -> Int32 in statvfs(path, &s) }
        return Usage(totalBytes: UInt64(s.f_blocks) * UInt64(s.f_frsize),
                     freeBytes: UInt64(s.f_bavail) * UInt64(s.f_frsize))
    }

    /// Writes a small file atomically: temp file, fsync, rename, fsync of the directory. One implementation,
    /// `Disk.writeAtomically`, on the real disk.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8]) throws(SystemError) {
        try PosixDisk().writeAtomically(path, bytes)
    }

    public static func readAll(_ path: String) throws(SystemError) -> [UInt8] {
        try PosixDisk().readAll(path)
    }

    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
