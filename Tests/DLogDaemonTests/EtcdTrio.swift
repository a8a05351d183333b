import DLogMetadata
import DLogTestSupport
import Foundation
import Synchronization

/// Three etcd members on loopback forming one cluster (Debian's `etcd-server`), started by the test; each dies
/// with the test process. A member can be SIGKILLed while the other two keep a quorum.
final class EtcdTrio: Sendable {
    let dir = TempDir("dlog-etcd3")
    let clientPorts: [Int]
    let peerPorts: [Int]
    private let members = Mutex<[GuardedChild?]>([])

    static var binary: String { ProcessInfo.processInfo.environment["ETCD_BINARY"] ?? "/usr/bin/etcd" }

    private init() throws {
        clientPorts = try (0..<3).map { _ in try freeLoopbackPort() }
        peerPorts = try (0..<3).map { _ in try freeLoopbackPort() }
    }

    /// A URI naming all three members, with its own key prefix.
    var uri: String { "etcd://" + clientPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") + "/dlog-recovery" }

    /// Starts the three members and waits until the cluster answers; retried on other ports if one was taken.
    static func start() async throws -> EtcdTrio {
        var failures: [String] = []
        for _ in 0..<3 {
            let trio = try EtcdTrio()
            do {
                try trio.launch()
                try await trio.waitUntilReady()
                return trio
            } catch {
                failures.append("\(error)")
                trio.stop()
            }
        }
        throw DaemonError("etcd cluster did not start: " + failures.joined(separator: "; "))
    }

    private func launch() throws {
        let cluster = (0..<3).map { "m\($0)=http://127.0.0.1:\(peerPorts[$0])" }.joined(separator: ",")
        for i in 0..<3 {
            let client = "http://127.0.0.1:\(clientPorts[i])", peer = "http://127.0.0.1:\(peerPorts[i])"
            let member = try GuardedChild(arguments: [
                Self.binary, "--name", "m\(i)", "--data-dir", dir.sub("m\(i)"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "dlog-test",
                "--logger", "zap", "--log-level", "warn",
            ], logPath: dir.sub("m\(i).log"), name: "etcd")
            members.withLock { $0.append(member) }
        }
    }

    private func waitUntilReady() async throws {
        let store = try MetadataURI.connect(uri, requestTimeout: .seconds(1))
        defer { Task { await store.shutdown() } }
        let deadline = ContinuousClock.now + .seconds(30)
        var failure = "no attempt"
        while ContinuousClock.now < deadline {
            do {
                _ = try await store.range(.key("/ready"), limit: 1)
                return
            } catch {
                failure = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DaemonError("etcd members on \(clientPorts) not ready within 30 s: \(failure)")
    }

    /// SIGKILLs member `index` (0...2), as a machine losing power.
    func kill(_ index: Int) {
        let member = members.withLock { list -> GuardedChild? in
            defer { list[index] = nil }
            return list[index]
        }
        member?.kill()
    }

    func stop() {
        for member in members.withLock({ list in defer { list.removeAll() }; return list }) { member?.kill() }
    }
}
