#if canImport(Glibc)
import Glibc
#endif

/// The outstanding requests of an asynchronous engine (io_uring, libaio), in submission order, with what each
/// still waits for: its write, and in `.fdatasync` mode its sync. Completions may arrive in any order; the
/// engine hands them back oldest first.
struct PendingRequests {
    struct Request {
        var token: UInt64
        var fd: Int32
        var expectedBytes: Int64
        var path: String
        /// Steps still to complete: the write, and the sync when it is a separate request.
        var awaiting: Int
        var error: SystemError?
    }

    private(set) var requests: [Request] = []
    var count: Int { requests.count }
    var oldestPath: String { requests[0].path }
    var oldestIsComplete: Bool { requests[0].awaiting == 0 }

    mutating func add(token: UInt64, file: File, bytes: Int, steps: Int) {
        requests.append(Request(token: token, fd: file.fd, expectedBytes: Int64(bytes), path: file.path,
                                awaiting: steps, error: nil))
    }

    /// A write finished with `result` (bytes written, or a negative errno). Returns the request when it still
    /// waits for a sync and the write succeeded, so the engine can start that sync.
    mutating func writeCompleted(token: UInt64, result: Int64, call: String) -> Request? {
        let i = index(of: token)
        requests[i].awaiting -= 1
        if result < 0 {
            requests[i].error = SystemError(call: call, path: requests[i].path, errno: Int32(-result))
        } else if result != requests[i].expectedBytes {
            // A short journal write leaves a hole; treat it like an I/O error rather than resubmitting.
            requests[i].error = SystemError(call: "write (short: \(result) of \(requests[i].expectedBytes))",
                                            path: requests[i].path, errno: EIO)
        }
        return requests[i].awaiting > 0 && requests[i].error == nil ? requests[i] : nil
    }

    /// A sync finished with `result` (0 or a negative errno).
    mutating func syncCompleted(token: UInt64, result: Int64, call: String) {
        let i = index(of: token)
        requests[i].awaiting -= 1
        if result < 0 && requests[i].error == nil {
            requests[i].error = SystemError(call: call, path: requests[i].path, errno: Int32(-result))
        }
    }

    /// Stops waiting for a request's remaining steps (its write failed, or its sync could not be started).
    mutating func abandon(token: UInt64, error: SystemError?) {
        let i = index(of: token)
        requests[i].awaiting = 0
        if requests[i].error == nil { requests[i].error = error }
    }

    /// Removes the oldest request, which must be complete: its token, or the error of its write or sync.
    mutating func takeOldest() throws(SystemError) -> UInt64 {
        let done = requests.removeFirst()
        if let error = done.error { throw error }
        return done.token
    }

    private func index(of token: UInt64) -> Int {
        guard let i = requests.firstIndex(where: { $0.token == token }) else {
            preconditionFailure("completion for unknown journal request \(token)")
        }
        return i
    }
}
