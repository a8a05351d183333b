import DistributedLog
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// Every role's port under clients that hold on to what they can: connections, unfinished frames, time.
@Suite(.serialized) struct HostileConnectionTests {
    static let limits = """
        connections_max = 2100
        idle_timeout_s = 60
        partial_frame_timeout_s = 2
        unfinished_frame_bytes_max = 8M

        """

    /// A role's port, and a call a well-behaved client makes on it.
    struct Target {
        let role: String
        let daemon: DaemonProcess
        let serve: @Sendable () async throws -> Void
    }

    static func withTargets(_ body: ([Target]) async throws -> Void) async throws {
        let dir = TempDir("dlog-hostile")
        try (limits + "data_dir = \(dir.sub("metadata"))\n").write(toFile: dir.sub("m.conf"), atomically: true, encoding: .utf8)
        let metadata = try await DaemonProcess.start(["--config", dir.sub("m.conf")], role: "metadata")
        defer { metadata.kill(SIGKILL) }
        let uri = "dlog://127.0.0.1:\(metadata.port)"
        try (limits + smallBookieConfig(under: dir)).write(toFile: dir.sub("b.conf"), atomically: true, encoding: .utf8)
        let bookie = try await DaemonProcess.start(["--config", dir.sub("b.conf")])
        defer { bookie.kill(SIGKILL) }
        try (limits + "metadata = \(uri)\n").write(toFile: dir.sub("p.conf"), atomically: true, encoding: .utf8)
        let proxy = try await DaemonProcess.start(["--config", dir.sub("p.conf")], role: "proxy")
        defer { proxy.kill(SIGKILL) }
        let (metadataPort, bookiePort, proxyPort) = (metadata.port, bookie.port, proxy.port)
        try await body([
            Target(role: "metadata", daemon: metadata) {
                let store = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: metadataPort)], requestTimeout: .seconds(5))
                _ = try await store.range(.prefix("/"), limit: 1)
                await store.shutdown()
            },
            Target(role: "bookie", daemon: bookie) {
                let client = try await BookieClient.connect(host: "127.0.0.1", port: bookiePort, requestTimeout: .seconds(5))
                _ = try await client.info()
                await client.close()
            },
            Target(role: "proxy", daemon: proxy) {
                var options = ProxyClient.Options()
                options.retryFor = .seconds(2)
                let client = ProxyClient(proxies: ["127.0.0.1:\(proxyPort)"], options: options)
                _ = try await client.owner(of: "hostile")
                await client.shutdown()
            },
        ])
    }

    @Test func idleConnectionsAreBoundedInNumber() async throws {
        // Proves on each role's port: 2,000 connections that send nothing cost little memory and do not stop a
        // well-behaved client, and past connections_max more are refused at once with a log line.
        try await Self.withTargets { targets in
            for target in targets {
                let before = residentBytes(of: target.daemon.process.processIdentifier)
                let idle = (0..<2000).compactMap { _ in RawConnection(port: target.daemon.port) }
                #expect(idle.count == 2000, "\(target.role): 2,000 connections made")
                try await target.serve()
                let grown = residentBytes(of: target.daemon.process.processIdentifier) - before
                #expect(grown < 64 << 20, "\(target.role): 2,000 idle connections grew RSS by \(grown >> 20) MiB")
                var extra = (0..<150).compactMap { _ in RawConnection(port: target.daemon.port) }
                // Connections wait in the listen backlog until the role accepts them: on a busy machine that takes a
                // while, and only then does the limit refuse the ones past it.
                var refused = 0
                let deadline = ContinuousClock.now + .seconds(20)
                while refused < 40 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    refused = extra.filter(\.isClosedByPeer).count
                }
                #expect(refused >= 40, "\(target.role): \(refused) of 150 connections past the limit were refused")
                #expect(target.daemon.stderr.contains("connection limit (connections_max = 2100) reached"),
                        "\(target.role) logs the limit: \(target.daemon.stderr.suffix(1500))")
                #expect(idle.allSatisfy { !$0.isClosedByPeer }, "\(target.role): idle connections within their time stay")
                // Every slot is taken now; closing the extra connections frees some for the next client.
                extra = []
                try await Task.sleep(for: .milliseconds(300))
                try await target.serve()
            }
        }
    }

    @Test func slowAndHalfSentFramesAreClosedAndBoundedInMemory() async throws {
        // Proves on each role's port: a client that sends a frame one byte every 300 ms is closed after
        // partial_frame_timeout_s; 40 clients that each send half of a 900 KB frame hold no more than
        // unfinished_frame_bytes_max between them (the rest are closed at once, with a log line) and are closed
        // after the timeout too; and a well-behaved client is served throughout.
        try await Self.withTargets { targets in
            for target in targets {
                let slow = try #require(RawConnection(port: target.daemon.port))
                let frame: [UInt8] = [0, 0, 0, 12] + [UInt8](repeating: 1, count: 12)
                let start = ContinuousClock.now
                var sent = 0
                while sent < frame.count, !slow.isClosedByPeer, ContinuousClock.now - start < .seconds(8) {
                    slow.send([frame[sent]])
                    sent += 1
                    try await Task.sleep(for: .milliseconds(300))
                }
                #expect(slow.isClosedByPeer && sent < frame.count,
                        "\(target.role): a frame sent a byte at a time was cut off (\(sent) bytes in \(ContinuousClock.now - start))")
                try await target.serve()

                let before = residentBytes(of: target.daemon.process.processIdentifier)
                let header: [UInt8] = [0, 0x0D, 0xBB, 0xA0]  // 900,000 bytes to come
                let half = [UInt8](repeating: 7, count: 450_000)
                let halves = (0..<40).compactMap { _ in RawConnection(port: target.daemon.port) }
                for connection in halves { connection.send(header + half) }
                var cut = 0
                for connection in halves where await connection.closedByPeer(within: .milliseconds(300)) { cut += 1 }
                #expect(cut >= 20, "\(target.role): \(cut) of 40 half-sent frames were cut off past the bound")
                #expect(target.daemon.stderr.contains("unfinished frames of all connections would pass"),
                        "\(target.role) logs the bound: \(target.daemon.stderr.suffix(1500))")
                let grown = residentBytes(of: target.daemon.process.processIdentifier) - before
                #expect(grown < 48 << 20, "\(target.role): half-sent frames grew RSS by \(grown >> 20) MiB")
                try await target.serve()
                var closed = 0
                for connection in halves where await connection.closedByPeer(within: .seconds(6)) { closed += 1 }
                #expect(closed == halves.count, "\(target.role): \(closed) of 40 half-sent frames closed after the timeout")
                #expect(target.daemon.stderr.contains("left unfinished for over"), "\(target.role) logs partial frames")
            }
        }
    }

    @Test func aQuietConnectionIsClosedAfterTheIdleTimeoutAndABusyOneIsNot() async throws {
        // Proves a connection on which nothing passes for idle_timeout_s is closed with a log line, while one that
        // keeps sending requests at shorter intervals stays open.
        let dir = TempDir("dlog-idle")
        try "idle_timeout_s = 1\ndata_dir = \(dir.sub("m"))\n".write(toFile: dir.sub("m.conf"), atomically: true, encoding: .utf8)
        let metadata = try await DaemonProcess.start(["--config", dir.sub("m.conf")], role: "metadata")
        defer { metadata.kill(SIGKILL) }
        let quiet = try #require(RawConnection(port: metadata.port))
        let busy = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: metadata.port)], requestTimeout: .seconds(5))
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .seconds(3) {
            _ = try await busy.range(.prefix("/"), limit: 1)
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(quiet.isClosedByPeer, "the quiet connection was closed")
        #expect(metadata.stderr.contains("idle for over 1.0 seconds (idle_timeout_s)"), "\(metadata.stderr.suffix(1500))")
        #expect(!metadata.stderr.contains("idle for over 1.0 seconds (idle_timeout_s); closing it (and"),
                "only the quiet connection was closed")
        await busy.shutdown()
    }
}
