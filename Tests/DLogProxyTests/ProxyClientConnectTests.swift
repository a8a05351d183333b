import DistributedLog
import Foundation
import Glibc
import Synchronization
import Testing

/// A listening socket on loopback that accepts and counts connections and never answers: a proxy that has
/// stalled, as far as a client can tell.
private final class SilentListener: Sendable {
    let port: Int
    private let fd: Int32
    private let accepted = Atomic<Int>(0)
    private let held = Mutex<[Int32]>([])

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 4096) == 0 else {
            Glibc.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { return }  // closed
                accepted.add(1, ordering: .relaxed)
                held.withLock { $0.append(client) }
            }
        }
    }

    var connections: Int { accepted.load(ordering: .relaxed) }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
        for client in held.withLock({ $0 }) { Glibc.close(client) }
    }
}

@Suite struct ProxyClientConnectTests {
    @Test func manyRequestsAtOnceMakeOneConnectionNotOneEach() async throws {
        // Proves a client with 300 requests in flight to one proxy connects to it once per time it needs a
        // connection, not once per request: each used to connect on its own, so after a dropped connection
        // thousands of connects at once timed out ("Connect timeout (5 s)") and the requests were refused.
        let listener = try SilentListener()
        defer { listener.close() }
        var options = ProxyClient.Options()
        options.requestTimeout = .milliseconds(500)
        options.retryFor = .milliseconds(800)
        let client = ProxyClient(proxies: ["127.0.0.1:\(listener.port)"], options: options)
        await withTaskGroup(of: Void.self) { group in
            for n in 0..<300 { group.addTask { _ = try? await client.write("s-\(n)", [1]) } }
        }
        await client.shutdown()
        // A connection per round of timeouts (at most a few within 0.8 s), never one per request.
        #expect(listener.connections >= 1 && listener.connections <= 10, "\(listener.connections) connections for 300 requests")
    }
}
