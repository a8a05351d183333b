import Foundation

/// A child process (etcd, say) with a watchdog that kills it (SIGKILL) once the test process is gone, so a
/// crashed or killed test run leaves nothing behind. The watchdog checks every second that the child's parent is
/// still the test process: once the test process exits, the child is handed to another parent at once, even while
/// the test process lingers as a zombie (which `kill -0` would still find alive), and even when the child inherited
/// one of the test process's pipes or sockets (so no end of file would ever tell). It stops when the child exits.
public final class GuardedChild: Sendable {
    public struct StartFailure: Error, CustomStringConvertible {
        public var description: String
    }

    private static let watchdog = """
        while [ -e /proc/$2 ] && read -r _ _ _ parent _ < /proc/$2/stat && [ "$parent" = "$1" ]; do sleep 1; done
        [ -e /proc/$2 ] && grep -q "$3" /proc/$2/comm 2>/dev/null && kill -9 "$2"
        exit 0
        """

    private let child: Process

    /// Starts `arguments[0]` with the rest as its arguments, output appended to `logPath`. `name`: what the
    /// child's /proc comm contains, so the watchdog never kills a process that reused the pid.
    public init(arguments: [String], logPath: String, name: String) throws {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else {
            throw StartFailure(description: "cannot open \(logPath)")
        }
        defer { try? log.close() }
        log.seekToEndOfFile()
        child = Process()
        child.executableURL = URL(fileURLWithPath: arguments[0])
        child.arguments = Array(arguments.dropFirst())
        child.standardInput = FileHandle.nullDevice
        child.standardOutput = log
        child.standardError = log
        try child.run()

        let watchdog = Process()
        watchdog.executableURL = URL(fileURLWithPath: "/bin/sh")
        watchdog.arguments = ["-c", Self.watchdog, "child-watchdog",
                              String(ProcessInfo.processInfo.processIdentifier), String(child.processIdentifier), name]
        watchdog.standardInput = FileHandle.nullDevice
        do {
            try watchdog.run()
        } catch {
            kill()
            throw error
        }
    }

    public var isRunning: Bool { child.statusIfExited == nil }

    /// SIGKILL, and wait until the child is gone (its ports and files released).
    public func kill() {
        if child.statusIfExited == nil { _ = Glibc.kill(child.processIdentifier, SIGKILL) }
        _ = child.exitStatusHoldingThread(within: 10)
    }
}

/// A free loopback TCP port: bind port 0, read the port the kernel chose, close. Another process may take it
/// before the caller binds it, so callers retry a failed start on other ports.
public func freeLoopbackPort() throws -> Int {
    let (fd, port) = try boundLoopbackSocket()
    close(fd)
    return port
}

/// A TCP socket bound to a port the kernel chose on 127.0.0.1, and that port; the caller closes it.
public func boundLoopbackSocket() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw GuardedChild.StartFailure(description: "socket: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0
        }
    }
    guard bound else {
        close(fd)
        throw GuardedChild.StartFailure(description: "bind to a free port: errno \(errno)")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}
