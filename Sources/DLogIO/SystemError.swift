#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and the errno. Every operating error from this module is one.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    public var call: String
    public var path: String
    public var errno: Int32

    public init(call: String, path: String, errno: Int32) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(call)(\(path)) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a system call, retrying EINTR. EBADF and EFAULT are programming errors and stop the process.
@inline(__always)
func retrying<T: SignedInteger>(_ call: String, _ path: String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        let e = Glibc.errno
        if e == EINTR { continue }
        precondition(e != EBADF && e != EFAULT, "\(call)(\(path)) got \(e): a bug in the caller")
        throw SystemError(call: call, path: path, errno: e)
    }
}
