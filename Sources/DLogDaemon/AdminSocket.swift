import CDLogSys
import Foundation
import Synchronization

/// The daemon's admin socket: a Unix stream socket (mode 0660, group `dlog` when that group exists) on which
/// `dlogctl admin` sends one request line of JSON, `{"command": "...", "args": [...]}`, and gets one line back,
/// `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`. Only root, members of `dlog`, and the
/// daemon's own user are answered (peer credentials, SO_PEERCRED). One thread serves it: admin traffic is
/// rare, and a command never waits for the data path.
public final class AdminSocket: Sendable {
    public typealias Command = @Sendable (_ args: [String]) throws -> Any

    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    public let path: String
    private let fd: Int32
    private let commands: Mutex<[String: (help: String, run: Command)]>
    private let stopped = Atomic(false)
    private let groupID: gid_t?

    /// Binds `path` (its directory is created). A socket file left by a dead daemon is replaced; one that a
    /// live daemon answers on is refused by name.
    public init(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: path) {
            if Self.answers(path) { throw Refusal("another dlogd serves the admin socket \(path); give this one its own admin_socket") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Refusal("admin socket \(path): socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw Refusal("admin socket path \(path) is longer than a Unix socket path may be")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw Refusal("admin socket \(path): \(why)")
        }
        let group = getgrnam("dlog").map { $0.pointee.gr_gid }
        if let group { _ = chown(path, getuid(), group) }
        chmod(path, 0o660)
        self.path = path
        self.fd = fd
        groupID = group
        commands = Mutex([:])
    }

    /// Adds (or replaces) a command.
    public func register(_ name: String, help: String, _ run: @escaping Command) {
        commands.withLock { $0[name] = (help, run) }
    }

    /// Serves on a thread of its own until `stop`.
    public func start() {
        let thread = Thread { [self] in self.serve() }
        thread.name = "dlogd-admin"
        thread.start()
    }

    public func stop() {
        stopped.store(true, ordering: .releasing)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }

    private func serve() {
        while !stopped.load(ordering: .acquiring) {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        // One client at a time is served, so one that stalls (sends no request, or reads no answer) is cut
        // off after 5 s each way instead of holding the socket for everyone.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard allowed(client) else {
            reply(client, ["ok": false, "error": "permission denied: only root, the group dlog and the daemon's user may use the admin socket"])
            return
        }
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !request.contains(UInt8(ascii: "\n")) && request.count < 65536 {
            let n = read(client, &chunk, chunk.count)
            if n <= 0 { break }
            request += chunk[0..<n]
        }
        guard let line = request.split(separator: UInt8(ascii: "\n")).first,
              let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
              let name = object["command"] as? String else {
            reply(client, ["ok": false, "error": "expected one line of JSON: {\"command\": \"...\", \"args\": [...]}"])
            return
        }
        let args = (object["args"] as? [Any])?.map { "\($0)" } ?? []
        let known = commands.withLock { $0 }
        if name == "help" {
            reply(client, ["ok": true, "result": known.mapValues(\.help)])
            return
        }
        guard let command = known[name] else {
            reply(client, ["ok": false, "error": "unknown command '\(name)'; this daemon knows: \(known.keys.sorted().joined(separator: ", ")), help"])
            return
        }
        do {
            reply(client, ["ok": true, "result": try command.run(args)])
        } catch {
            reply(client, ["ok": false, "error": "\(error)"])
        }
    }

    /// Root, the daemon's own user, or a member of the `dlog` group (peer credentials of the connection).
    private func allowed(_ client: Int32) -> Bool {
        var uid: UInt32 = 0, gid: UInt32 = 0
        guard dlog_peer_credentials(client, &uid, &gid) == 0 else { return false }
        if uid == 0 || uid == getuid() { return true }
        guard let groupID else { return false }
        if gid == groupID { return true }
        guard let user = getpwuid(uid) else { return false }
        var groups = [gid_t](repeating: 0, count: 64)
        var count = Int32(groups.count)
        guard getgrouplist(user.pointee.pw_name, gid, &groups, &count) >= 0 else { return false }
        return groups.prefix(Int(count)).contains(groupID)
    }

    private func reply(_ client: Int32, _ object: [String: Any]) {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
            ?? Data("{\"ok\":false,\"error\":\"the answer could not be encoded\"}".utf8)
        let bytes = Array(data) + [UInt8(ascii: "\n")]
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Whether a daemon answers on `path` now.
    static func answers(_ path: String) -> Bool {
        (try? AdminClient(path: path).call("help", [])) != nil
    }
}

/// The client side, for dlogctl and tests: one request, one answer.
public struct AdminClient: Sendable {
    public let path: String
    public init(path: String) { self.path = path }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends `command` with `args`; returns the result, or throws the daemon's error (or "not running").
    public func call(_ command: String, _ args: [String]) throws -> Any {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure(description: "socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            if errno == EACCES { throw Failure(description: "permission denied on \(path): run as root or as a member of the group dlog") }
            throw Failure(description: "not running (socket \(path))")
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = try JSONSerialization.data(withJSONObject: ["command": command, "args": args]) + Data("\n".utf8)
        _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !answer.contains(UInt8(ascii: "\n")) {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            answer += chunk[0..<n]
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any] else {
            throw Failure(description: "no answer from the daemon on \(path)")
        }
        guard object["ok"] as? Bool == true else { throw Failure(description: object["error"] as? String ?? "failed") }
        return object["result"] ?? NSNull()
    }
}
