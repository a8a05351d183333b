import DistributedLog
import DLogDaemon
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing

/// TLS on every port of real daemons: a metadata role, a bookie and a proxy, each with `tls_mode = required`.
@Suite(.serialized) struct TLSPortTests {
    /// The three ports of a running TLS cluster and the certificates it was made with.
    struct Ports {
        let tls: TLSFixture
        let metadata: DaemonProcess
        let bookie: DaemonProcess
        let proxy: DaemonProcess
        /// Each role's admin socket.
        let sockets: (metadata: String, bookie: String, proxy: String)
        var uri: String { "dlog://127.0.0.1:\(metadata.port)" }

        /// A role's metrics, through its admin socket.
        func metrics(_ socket: String) async throws -> Exposition {
            Exposition(try await runTool(dlogctlPath, ["admin", "--socket", socket, "metrics"]).stdout)
        }
    }

    /// Starts the metadata role, `dlogctl cluster init` over TLS, one bookie and a proxy writing 1-copy segments.
    static func withTLSCluster(_ body: (Ports) async throws -> Void) async throws {
        let dir = TempDir("dlog-tls")
        let tls = try await TLSFixture(in: dir.path)
        let metadataConfig = dir.sub("metadata.conf")
        let sockets = (metadata: dir.sub("metadata.sock"), bookie: dir.sub("bookie.sock"), proxy: dir.sub("proxy.sock"))
        try (tls.config("metadata") + "data_dir = \(dir.sub("metadata"))\nmetadata_writers = app2\nadmin_socket = \(sockets.metadata)\n")
            .write(toFile: metadataConfig, atomically: true, encoding: .utf8)
        let metadata = try await DaemonProcess.start(["--config", metadataConfig], role: "metadata")
        defer { metadata.kill(SIGKILL) }
        let uri = "dlog://127.0.0.1:\(metadata.port)"
        try await TLSFixture.tool(["cluster", "init", "--metadata", uri] + tls.adminArguments)

        let bookieConfig = dir.sub("bookie.conf")
        try (tls.config("bookie") + smallBookieConfig(under: dir) + "metadata = \(uri)\nbookie_id = bookie-0\nledger_clients = app2\nadmin_socket = \(sockets.bookie)\n")
            .write(toFile: bookieConfig, atomically: true, encoding: .utf8)
        let bookie = try await DaemonProcess.start(["--config", bookieConfig])
        defer { bookie.kill(SIGKILL) }
        let admin = Cluster(store: RemoteStore(endpoints: [.init(host: "127.0.0.1", port: metadata.port)],
                                               requestTimeout: .seconds(5), tls: try tls.client("admin")))
        let deadline = ContinuousClock.now + .seconds(30)
        while try await admin.bookies().isEmpty {
            guard ContinuousClock.now < deadline else { throw DaemonError("the TLS bookie did not register: \(bookie.stderr)") }
            try await Task.sleep(for: .milliseconds(50))
        }

        let proxyConfig = dir.sub("proxy.conf")
        try (tls.config("proxy") + "metadata = \(uri)\nensemble = 1\nwrite_quorum = 1\nack_quorum = 1\nadmin_socket = \(sockets.proxy)\n")
            .write(toFile: proxyConfig, atomically: true, encoding: .utf8)
        let proxy = try await DaemonProcess.start(["--config", proxyConfig], role: "proxy")
        defer { proxy.kill(SIGKILL) }
        try await body(Ports(tls: tls, metadata: metadata, bookie: bookie, proxy: proxy, sockets: sockets))
    }

    /// One call on each port as a client with `identity`, connecting to `host`.
    enum Port: CaseIterable { case metadata, bookie, proxy }

    static func call(_ port: Port, on ports: Ports, as identity: TLSIdentity?, host: String = "127.0.0.1") async throws {
        switch port {
        case .metadata:
            let store = RemoteStore(endpoints: [.init(host: host, port: ports.metadata.port)], requestTimeout: .seconds(5),
                                    tls: identity)
            defer { Task { await store.shutdown() } }
            _ = try await Cluster(store: store).bookies()
        case .bookie:
            let client = try await BookieClient.connect(host: host, port: ports.bookie.port, requestTimeout: .seconds(5),
                                                        tls: identity)
            defer { Task { await client.close() } }
            _ = try await client.info()
        case .proxy:
            var options = ProxyClient.Options()
            options.tls = identity
            options.retryFor = .milliseconds(500)
            options.requestTimeout = .seconds(5)
            let client = ProxyClient(proxies: ["\(host):\(ports.proxy.port)"], options: options)
            defer { Task { await client.shutdown() } }
            _ = try await client.write("tls-\(UUID().uuidString.prefix(8))", Array("hello".utf8))
        }
    }

    /// The error `call` ends with; a call that succeeds is a test failure.
    static func refusal(_ port: Port, on ports: Ports, as identity: TLSIdentity?,
                        host: String = "127.0.0.1") async -> String {
        do {
            try await call(port, on: ports, as: identity, host: host)
            return "no error: the \(port) port served this client"
        } catch {
            return "\(error)"
        }
    }

    @Test func everyPortRefusesBadClientsWithAClearErrorAndKeepsServingOthers() async throws {
        // Proves, on the metadata, bookie and proxy ports with TLS required: a client without a certificate, with
        // one from another CA, with an expired one, and a client that expects a host name the server's
        // certificate does not carry are each refused with an error naming the cause; a plaintext client is told
        // the port speaks TLS; each refusal is logged by the server with the peer; and a client with a good certificate is
        // served before, between and after them.
        try await Self.withTLSCluster { ports in
            let good = try ports.tls.client("admin")
            for port in Port.allCases {
                try await Self.call(port, on: ports, as: good)

                let none = await Self.refusal(port, on: ports, as: try ports.tls.client(nil))
                #expect(none.contains("requires a client certificate"), "\(port), no certificate: \(none)")
                let stranger = await Self.refusal(port, on: ports, as: try ports.tls.client("stranger", from: "other"))
                #expect(stranger.contains("does not trust the CA"), "\(port), another CA: \(stranger)")
                let expired = await Self.refusal(port, on: ports, as: try ports.tls.client("expired"))
                #expect(expired.contains("expired"), "\(port), expired certificate: \(expired)")
                let plaintext = await Self.refusal(port, on: ports, as: nil)
                #expect(plaintext.contains("the peer speaks TLS and this side does not"), "\(port), plaintext: \(plaintext)")
                let wrongHost = await Self.refusal(port, on: ports, as: good, host: "localhost")
                #expect(wrongHost.contains("does not name localhost"), "\(port), wrong host name: \(wrongHost)")

                try await Self.call(port, on: ports, as: good)
            }
            for (name, daemon) in [("metadata", ports.metadata), ("bookie", ports.bookie), ("proxy", ports.proxy)] {
                let log = daemon.stderr
                #expect(log.contains("TLS connection from 127.0.0.1:") && log.contains("refused: the client showed no certificate"),
                        "\(name) logs a refusal with the peer: \(log.suffix(3000))")
                #expect(log.contains("expired at"), "\(name) says which certificate expired: \(log.suffix(3000))")
            }
        }
    }

    /// The certificate a port serves a new connection with (DER).
    static func servedCertificate(port: Int, as identity: TLSIdentity) async throws -> [UInt8] {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        try await identity.secure(channel, host: "127.0.0.1", port: port).get()
        let certificate = try await channel.nioSSL_peerCertificate().get()
        try? await channel.close()
        return try #require(certificate).toDERBytes()
    }

    static func certificateFile(_ path: String) throws -> [UInt8] {
        try #require(try NIOSSLCertificate.fromPEMFile(path).first).toDERBytes()
    }

    @Test func sighupRotatesEveryPortsCertificateWhileAWriterKeepsWriting() async throws {
        // Proves that new certificates issued over the old files and a SIGHUP to each daemon make every port serve
        // new connections with the new certificate, while a writer that keeps writing through the proxy (whose own
        // connections to the bookie and the metadata role were made with the old ones) loses no acknowledged
        // record and sees no error.
        try await Self.withTLSCluster { ports in
            let good = try ports.tls.client("admin")
            let daemons = [("metadata", ports.metadata), ("bookie", ports.bookie), ("proxy", ports.proxy)]
            var before: [String: [UInt8]] = [:]
            for (role, daemon) in daemons { before[role] = try await Self.servedCertificate(port: daemon.port, as: good) }

            var options = ProxyClient.Options()
            options.tls = good
            let client = ProxyClient(proxies: ["127.0.0.1:\(ports.proxy.port)"], options: options)
            try await client.create("rotate")
            let acknowledged = Mutex<[(DLSN, [UInt8])]>([])
            let stop = Atomic(false)
            let writer = Task {
                var n = 0
                while !stop.load(ordering: .relaxed) && n < 100_000 {
                    let payload = Array("record-\(n)".utf8)
                    let dlsn = try await client.write("rotate", payload)
                    acknowledged.withLock { $0.append((dlsn, payload)) }
                    n += 1
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            for (role, daemon) in daemons {
                try await TLSFixture.tool(["tls", "issue", "--dir", ports.tls.dir + "/ca", "--role", role, "--name", role,
                                           "--host", "127.0.0.1"])
                daemon.kill(SIGHUP)
            }
            for (role, daemon) in daemons {
                let deadline = ContinuousClock.now + .seconds(10)
                while !daemon.stderr.contains("TLS certificate reloaded") && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let served = try await Self.servedCertificate(port: daemon.port, as: good)
                #expect(served != before[role], "\(role) serves a new certificate after SIGHUP: \(daemon.stderr.suffix(2000))")
                #expect(served == (try Self.certificateFile(ports.tls.dir + "/ca/\(role).crt")), "\(role) serves the new file")
            }
            try await Task.sleep(for: .milliseconds(300))
            stop.store(true, ordering: .relaxed)
            try await writer.value
            await client.shutdown()

            let written = acknowledged.withLock { $0 }
            #expect(written.count > 10, "the writer kept writing: \(written.count) records")
            let store = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: ports.metadata.port)], tls: good)
            var poolOptions = BookiePool.Options()
            poolOptions.tls = good
            let namespace = Namespace(pool: BookiePool(cluster: Cluster(store: store), options: poolOptions))
            let reader = try await namespace.openReader("rotate")
            var read: [DLSN: [UInt8]] = [:]
            let deadline = ContinuousClock.now + .seconds(30)
            while read.count < written.count && ContinuousClock.now < deadline {
                for record in try await reader.readBulk(max: 1000, wait: .milliseconds(200)) { read[record.dlsn] = record.payload }
            }
            for (dlsn, payload) in written { #expect(read[dlsn] == payload, "acknowledged \(dlsn) reads back") }
            await namespace.close()
            await namespace.pool.shutdown()
            await store.shutdown()
        }
    }

    /// One request of each bookie operation, on ledger `ledger`.
    static func everyBookieRequest(ledger: LedgerID) -> [BookieRequest] {
        let key = MasterKey(password: "tls-test")
        let entry = EntryCodec.encode(EntryHeader(ledger: ledger, entry: EntryID(0), lastAddConfirmed: EntryID(-1),
                                                  ledgerLength: 5), payload: Array("hello".utf8))
        let requests: [BookieRequest] = [
            .add(masterKey: key, entry: entry, recovery: false),
            .read(ledger: ledger, entry: EntryID(0), fenceWith: nil),
            .readLAC(ledger: ledger, longPoll: nil),
            .writeLAC(ledger: ledger, masterKey: key, lac: EntryID(0)),
            .deleteLedger(ledger: ledger),
            .getInfo,
            .listEntries(ledger: ledger, from: EntryID(0), rangesMax: 10),
            .ledgerKey(ledger: ledger),
            .readRange(ledger: ledger, first: EntryID(0), last: EntryID(0), maxBytes: 1 << 16),
            .addBatch(masterKey: key, entries: [entry], recovery: false),
        ]
        #expect(Set(requests.map(\.op)) == Set(BookieOp.allCases), "one request of every operation")
        return requests
    }

    /// The bookie's answer to `request` from a client with `identity`: its status, or `ok`.
    static func status(_ request: BookieRequest, on ports: Ports, as identity: TLSIdentity) async throws -> BookieStatus {
        let client = try await BookieClient.connect(host: "127.0.0.1", port: ports.bookie.port, requestTimeout: .seconds(5),
                                                    tls: identity)
        defer { Task { await client.close() } }
        if case .failed(let status, let message) = try await client.send(request) {
            if status == .permissionDenied { #expect(message.contains(" may not \(request.op.name)"), "\(message)") }
            return status
        }
        return .ok
    }

    @Test func principalsWithoutPermissionGetPermissionDeniedForEachGuardedOperation() async throws {
        // Proves on a bookie and a metadata role with TLS required: the read-only principal (monitor) and an
        // application not named in ledger_clients / metadata_writers get PERMISSION_DENIED, naming principal and
        // operation, for every operation that changes or uses ledgers and every metadata write; a proxy may use
        // ledgers but not delete them or read their keys; a named application and an admin may; each refusal is
        // logged with the principal and the operation, and counted.
        try await Self.withTLSCluster { ports in
            let tls = ports.tls
            let watcher = try tls.client("watcher"), app1 = try tls.client("app1"), app2 = try tls.client("app2")
            let admin = try tls.client("admin")
            let proxy = try TLSIdentity(files: TLSFiles(certificateChain: tls.dir + "/ca/proxy.crt",
                                                        privateKey: tls.dir + "/ca/proxy.key", caBundle: tls.ca))
            let requests = Self.everyBookieRequest(ledger: LedgerID(77))
            for request in requests {
                let guarded = request.op != .getInfo
                for (name, identity) in [("watcher", watcher), ("app1", app1)] {
                    let status = try await Self.status(request, on: ports, as: identity)
                    #expect((status == .permissionDenied) == guarded, "\(name) \(request.op.name): \(status)")
                }
                let adminOnly = request.op == .deleteLedger || request.op == .ledgerKey
                let asProxy = try await Self.status(request, on: ports, as: proxy)
                #expect((asProxy == .permissionDenied) == adminOnly, "proxy \(request.op.name): \(asProxy)")
                let asApp = try await Self.status(request, on: ports, as: app2)
                #expect((asApp == .permissionDenied) == adminOnly, "app2 (a ledger client) \(request.op.name): \(asApp)")
                #expect(try await Self.status(request, on: ports, as: admin) != .permissionDenied, "admin \(request.op.name)")
            }
            #expect(ports.bookie.stderr.contains("permission denied: watcher (monitor) may not ADD"), "\(ports.bookie.stderr.suffix(2000))")
            #expect(ports.bookie.stderr.contains("permission denied: proxy (proxy) may not DELETE_LEDGER"))

            func metadata(_ identity: TLSIdentity) -> RemoteStore {
                RemoteStore(endpoints: [.init(host: "127.0.0.1", port: ports.metadata.port)], requestTimeout: .seconds(5),
                            tls: identity)
            }
            func refusal(_ body: () async throws -> Void) async -> String? {
                do { try await body(); return nil } catch { return "\(error)" }
            }
            for (name, identity) in [("watcher", watcher), ("app1", app1)] {
                let store = metadata(identity)
                _ = try await store.range(.prefix("/"), limit: 10)
                _ = try await store.stats()
                let create = await refusal { _ = try await store.create("/tls-test/\(name)", value: [1]) }
                #expect(create?.contains("permission denied: \(name)") == true && create?.contains("may not COMMIT") == true,
                        "\(name) COMMIT: \(create ?? "allowed")")
                let grant = await refusal { _ = try await store.grantLease(ttlSeconds: 10) }
                #expect(grant?.contains("may not LEASE_GRANT") == true, "\(name) LEASE_GRANT: \(grant ?? "allowed")")
                let keepAlive = await refusal { _ = try await store.keepAlive(LeaseID(1)) }
                #expect(keepAlive?.contains("may not LEASE_KEEPALIVE") == true, "\(name): \(keepAlive ?? "allowed")")
                let revoke = await refusal { try await store.revoke(LeaseID(1)) }
                #expect(revoke?.contains("may not LEASE_REVOKE") == true, "\(name): \(revoke ?? "allowed")")
                await store.shutdown()
            }
            let writer = metadata(app2)
            _ = try await writer.create("/tls-test/app2", value: [2])
            let lease = try await writer.grantLease(ttlSeconds: 10)
            try await writer.revoke(lease.id)
            await writer.shutdown()
            #expect(ports.metadata.stderr.contains("permission denied: watcher (monitor) may not COMMIT"),
                    "\(ports.metadata.stderr.suffix(2000))")
            // Every refusal is counted in the role's metrics.
            #expect(try await ports.metrics(ports.sockets.bookie).values("dlog_bookie_permission_denied_total").first ?? 0 > 0)
            #expect(try await ports.metrics(ports.sockets.metadata).values("dlog_metadata_permission_denied_total").first ?? 0 > 0)
        }
    }

    @Test func perLogRightsAreGrantedAndRevokedWithDlogctlAndCheckedByTheProxy() async throws {
        // Proves that through a proxy with TLS required an application may write to a log only after
        // `dlogctl acl grant` gave it write on a prefix of the log's name, not to logs under other prefixes, and
        // not create logs without admin; that `dlogctl acl list` shows the grant; that `dlogctl acl revoke` takes
        // it back; and that refusals are PERMISSION_DENIED naming the principal, the right and the stream.
        try await Self.withTLSCluster { ports in
            func client(_ identity: TLSIdentity) -> ProxyClient {
                var options = ProxyClient.Options()
                options.tls = identity
                options.retryFor = .seconds(2)
                return ProxyClient(proxies: ["127.0.0.1:\(ports.proxy.port)"], options: options)
            }
            let admin = client(try ports.tls.client("admin"))
            let app = client(try ports.tls.client("app1"))
            try await admin.create("orders/a")
            try await admin.create("payments/x")
            func denial(_ body: () async throws -> Void) async -> String? {
                do { try await body(); return nil } catch let failure as ProxyFailure where failure.status == .permissionDenied {
                    return failure.message
                } catch { return "another error: \(error)" }
            }
            func eventually(_ want: Bool, _ body: () async throws -> Void) async -> Bool {
                let deadline = ContinuousClock.now + .seconds(10)
                while ContinuousClock.now < deadline {
                    if (await denial(body) == nil) == want { return true }
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return false
            }
            let before = await denial { _ = try await app.write("orders/a", Array("one".utf8)) }
            #expect(before == "app1 (client) may not write stream 'orders/a' (grant it: dlogctl acl grant)", "\(before ?? "allowed")")

            let metadata = ["--metadata", ports.uri] + ports.tls.adminArguments
            try await TLSFixture.tool(["acl", "grant", "--principal", "app1", "--prefix", "orders/", "--rights", "write,read"] + metadata)
            #expect(await eventually(true) { _ = try await app.write("orders/a", Array("two".utf8)) }, "the grant lets app1 write")
            #expect(await denial { _ = try await app.write("payments/x", Array("x".utf8)) }?.contains("may not write stream 'payments/x'") == true)
            #expect(await denial { try await app.create("orders/b") }?.contains("may not admin stream 'orders/b'") == true)
            let listed = try await TLSFixture.tool(["acl", "list", "--json"] + metadata)
            #expect(listed.contains("\"app1\"") && listed.contains("\"orders/\""), "\(listed)")
            #expect(listed.contains("\"read\"") && listed.contains("\"write\""), "\(listed)")

            try await TLSFixture.tool(["acl", "revoke", "--principal", "app1", "--prefix", "orders/"] + metadata)
            #expect(await eventually(false) { _ = try await app.write("orders/a", Array("three".utf8)) }, "the revoke takes it back")
            #expect(try await TLSFixture.tool(["acl", "list", "--json"] + metadata).trimmingCharacters(in: .whitespacesAndNewlines) == "{}")
            #expect(ports.proxy.stderr.contains("permission denied: app1 (client) may not write stream 'orders/a'"),
                    "\(ports.proxy.stderr.suffix(2000))")
            #expect(try await ports.metrics(ports.sockets.proxy).values("dlog_proxy_permission_denied_total").first ?? 0 > 0)
            await app.shutdown()
            await admin.shutdown()
        }
    }
}
