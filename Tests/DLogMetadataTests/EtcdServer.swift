import DLogMetadata
import DLogWire
import DLogTestSupport
import Foundation
import Synchronization

/// A real etcd member for tests: a child process on free loopback ports with a fresh data directory.
///
///     let etcd = try await EtcdServer.start()
///     defer { etcd.stop() }
///     let store = try etcd.store()
///
/// A watchdog kills the member when the test process is gone, even after a crash. `restart()` kills it with
/// SIGKILL and starts it again on the same ports and data directory, like a machine that lost power.
final class EtcdServer: Sendable {
    struct StartFailure: Error, CustomStringConvertible {
        var description: String
    }

    let clientPort: Int
    let peerPort: Int
    let directory: TempDir
    let extraArguments: [String]
    /// etcd's TLS, when it serves HTTPS and checks client certificates.
    let tls: TLS?
    private let running = Mutex<Guarded?>(nil)

    /// etcd's own certificate, key and CA bundle (`--cert-file`, `--key-file`, `--trusted-ca-file`, with
    /// `--client-cert-auth`), and the identity this process's stores connect with.
    struct TLS: Sendable {
        var certificate: String
        var key: String
        var ca: String
        var client: TLSIdentity
    }

    /// The etcd binary: `$ETCD_BINARY`, else /usr/bin/etcd.
    static var binary: String { ProcessInfo.processInfo.environment["ETCD_BINARY"] ?? "/usr/bin/etcd" }

    var endpoints: [(host: String, port: Int)] { [(host: "127.0.0.1", port: clientPort)] }
    var dataDirectory: String { directory.sub("data") }
    var logPath: String { directory.sub("etcd.log") }

    /// A metadata URI for this member, e.g. "etcd://127.0.0.1:40123/dlog/test1".
    func uri(prefix: String) -> String { "etcd://127.0.0.1:\(clientPort)\(prefix)" }

    /// A store on this member under `prefix` (a fresh one per call when left out).
    func store(prefix: String = "/test/" + UUID().uuidString,
               configuration: EtcdStore.Configuration = .init()) throws -> EtcdStore {
        var configuration = configuration
        if configuration.tls == nil { configuration.tls = tls?.client }
        return try EtcdStore(endpoints: endpoints, prefix: prefix, configuration: configuration)
    }

    private init(clientPort: Int, peerPort: Int, directory: TempDir, extraArguments: [String], tls: TLS?) {
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.directory = directory
        self.extraArguments = extraArguments
        self.tls = tls
    }

    deinit { stop() }

    /// Starts a member on free ports and waits until it serves a range. Ports are picked by binding port 0 and
    /// closing, which another process may take before etcd binds them, so a failed start is retried on others.
    static func start(extraArguments: [String] = [], readyWithin: Duration = .seconds(20),
                      tls: TLS? = nil) async throws -> EtcdServer {
        var failures: [String] = []
        for _ in 0..<3 {
            let server = EtcdServer(clientPort: try freePort(), peerPort: try freePort(),
                                    directory: TempDir("dlog-etcd"), extraArguments: extraArguments, tls: tls)
            do {
                try await server.launch(readyWithin: readyWithin)
                return server
            } catch {
                failures.append("\(error)")
                server.stop()
            }
        }
        throw StartFailure(description: "etcd did not start: " + failures.joined(separator: "; "))
    }

    /// Kills the member with SIGKILL and waits for it to exit. Idempotent.
    func stop() {
        let guarded = running.withLock { running in
            defer { running = nil }
            return running
        }
        guarded?.kill()
    }

    /// SIGKILL, then the same member again: same ports, same data directory.
    func restart(readyWithin: Duration = .seconds(20)) async throws {
        stop()
        try await launch(readyWithin: readyWithin)
    }

    private func launch(readyWithin: Duration) async throws {
        let guarded = try Guarded(arguments: arguments(), logPath: logPath, name: "etcd")
        running.withLock { $0 = guarded }
        try await waitUntilReady(guarded, within: readyWithin)
    }

    private func arguments() -> [String] {
        let client = "\(tls == nil ? "http" : "https")://127.0.0.1:\(clientPort)"
        let peer = "http://127.0.0.1:\(peerPort)"
        let security = tls.map { ["--cert-file", $0.certificate, "--key-file", $0.key, "--trusted-ca-file", $0.ca,
                                  "--client-cert-auth"] } ?? []
        return [Self.binary, "--name", "test", "--data-dir", dataDirectory,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "test=\(peer)", "--logger", "zap", "--log-level", "warn"] + security + extraArguments
    }

    /// Polls with a range until etcd has a leader and answers; fails early when the process exits.
    private func waitUntilReady(_ guarded: Guarded, within: Duration) async throws {
        var configuration = EtcdStore.Configuration()
        configuration.requestTimeout = .seconds(1)
        configuration.connectTimeout = .milliseconds(500)
        let probe = try store(prefix: "/probe", configuration: configuration)
        let deadline = ContinuousClock.now + within
        var failure = "no attempt"
        while ContinuousClock.now < deadline, guarded.isRunning {
            do {
                _ = try await probe.range(.key("/ready"), limit: 1)
                await probe.shutdown()
                return
            } catch {
                failure = "\(error)"
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        await probe.shutdown()
        if !guarded.isRunning { failure = "etcd exited" }
        throw StartFailure(description: "etcd on port \(clientPort) not ready within \(within): \(failure); log: \(logTail())")
    }

    func logTail() -> String {
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return String(log.suffix(1500))
    }

    /// A free loopback TCP port (see `freeLoopbackPort`).
    static func freePort() throws -> Int { try freeLoopbackPort() }
}

/// etcd as a child process that dies with the test process (see `GuardedChild`).
private typealias Guarded = GuardedChild
