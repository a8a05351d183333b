import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Certificate and key files as `dlogctl tls` and the standalone write them.
public enum PEMFiles {
    /// Writes `text` to `path` by a rename, so a reader never sees half a file. A secret is mode 0600, or 0640
    /// with group dlog when it is `forDaemons` and that group exists (the daemons run as user dlog); anything else
    /// is 0644.
    public static func write(_ text: String, to path: String, secret: Bool, forDaemons: Bool = true) throws {
        let temporary = path + ".tmp"
        unlink(temporary)
        // Created with its final mode, so a key is never readable by others, not even for a moment.
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, secret ? 0o600 : 0o644)
        guard fd >= 0 else { throw PKIError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0 else {
            unlink(temporary)
            throw PKIError("cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        if secret, forDaemons, let group = getgrnam("dlog") {
            chown(temporary, uid_t.max, group.pointee.gr_gid)
            chmod(temporary, 0o640)
        }
        guard rename(temporary, path) == 0 else {
            throw PKIError("cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
