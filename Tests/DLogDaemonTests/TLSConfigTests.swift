import DLogDaemon
import DLogMetadata
import DLogPKI
import DLogTestSupport
import DLogWire
import Foundation
import Logging
import NIOSSL
import Synchronization
import Testing

/// The `tls_*` config keys, the files they name, and a port in `optional` mode.
@Suite(.serialized) struct TLSConfigTests {
    func settings(_ text: String) throws(ConfigFile.Problem) -> TLSSettings {
        var s = MetadataSettings()
        try s.apply(try ConfigFile.parse(text, path: "/etc/dlog/metadata.conf", knownKeys: MetadataSettings.keys))
        return s.tls
    }

    @Test func everyRoleKnowsTheTLSKeysAndAModeNeedsItsFiles() throws {
        // Proves the keys parse in each role's config, a wrong mode is named with what is allowed, and a mode other
        // than off without all three files names the missing keys and the file and line.
        for keys in [MetadataSettings.keys, BookieSettings.keys, ProxySettings.keys] {
            #expect(TLSSettings.keys.isSubset(of: keys))
        }
        let s = try settings("tls_mode = required\ntls_cert_file = /c.pem\ntls_key_file = /k.pem\ntls_ca_file = /ca.pem\n")
        #expect(s.mode == .required && s.certificateFile == "/c.pem" && s.keyFile == "/k.pem" && s.caFile == "/ca.pem")
        #expect(try settings("").mode == .off, "TLS is off without a config")
        do {
            _ = try settings("tls_mode = on")
            Issue.record("tls_mode = on was accepted")
        } catch {
            #expect(error.message.contains("off, optional, required"))
        }
        do {
            _ = try settings("\ntls_mode = optional\ntls_ca_file = /ca.pem\n")
            Issue.record("tls_mode = optional without a certificate was accepted")
        } catch {
            #expect(error.message.contains("metadata.conf:2") && error.message.contains("tls_cert_file, tls_key_file"),
                    "\(error.message)")
        }
    }

    @Test func aPrincipalIsNamedByTheConfiguredPartOfTheCertificateAndItsRoleByItsOU() throws {
        // Proves tls_principal picks the common name, the first DNS name or the first URI of a client certificate,
        // that the subject's OU gives the role (an unknown one is an application client), and that the keys that
        // name principals parse.
        let ca = try ClusterCA.create(name: "principal test", days: 1)
        func certificate(_ role: ClusterCA.Role, _ name: String, hosts: [String]) throws -> NIOSSLCertificate {
            try NIOSSLCertificate(bytes: Array(try ca.issue(role: role, name: name, hosts: hosts, days: 1).certificatePEM.utf8),
                                  format: .pem)
        }
        let monitor = try certificate(.monitor, "watcher", hosts: ["watch.example.net"])
        #expect(Principal.from(monitor, source: .cn) == Principal(name: "watcher", role: .monitor))
        #expect(Principal.from(monitor, source: .dns) == Principal(name: "watch.example.net", role: .monitor))
        #expect(Principal.from(monitor, source: .uri) == nil, "no URI name: no principal")
        let app = try certificate(.client, "app1", hosts: [])
        #expect(Principal.from(app, source: .cn) == Principal(name: "app1", role: .client))

        var bookie = BookieSettings()
        try bookie.apply(try ConfigFile.parse("tls_principal = dns\nledger_clients = app1, app2\n", path: "b.conf",
                                              knownKeys: BookieSettings.keys))
        #expect(bookie.tls.principalSource == .dns && bookie.ledgerClients == ["app1", "app2"])
        var metadata = MetadataSettings()
        try metadata.apply(try ConfigFile.parse("metadata_writers = app2\n", path: "m.conf", knownKeys: MetadataSettings.keys))
        #expect(metadata.metadataWriters == ["app2"])
        #expect(throws: ConfigFile.Problem.self) { try settings("tls_principal = email") }
    }

    @Test func shippedConfigsShowTheTLSAndLimitDefaults() throws {
        // Proves the TLS keys in etc/metadata.conf, etc/bookie.conf and etc/proxy.conf require TLS with the files
        // the package's e2e and docs/security.md put in /etc/dlog/tls, and their limits are the roles' defaults.
        let root = String(#filePath).components(separatedBy: "/Tests/")[0] + "/etc/"
        func text(_ name: String) throws -> String { try String(contentsOfFile: root + name, encoding: .utf8) }
        var metadata = MetadataSettings()
        try metadata.apply(try ConfigFile.parse(try text("metadata.conf"), path: "metadata.conf", knownKeys: MetadataSettings.keys))
        var bookie = BookieSettings()
        try bookie.apply(try ConfigFile.parse(try text("bookie.conf"), path: "bookie.conf", knownKeys: BookieSettings.keys))
        var proxy = ProxySettings()
        try proxy.apply(try ConfigFile.parse(try text("proxy.conf"), path: "proxy.conf", knownKeys: ProxySettings.keys))
        for (name, tls, connections) in [("metadata", metadata.tls, metadata.connections), ("bookie", bookie.tls, bookie.connections),
                                         ("proxy", proxy.tls, proxy.connections)] {
            var shipped = TLSSettings()
            shipped.mode = .required
            (shipped.certificateFile, shipped.keyFile, shipped.caFile) =
                ("/etc/dlog/tls/node.crt", "/etc/dlog/tls/node.key", "/etc/dlog/tls/ca.crt")
            #expect(tls == shipped, "\(name).conf requires TLS with the conventional files")
            #expect(connections == ConnectionSettings(), "\(name).conf's limits are the defaults")
            #expect(try text("\(name).conf").contains("unfinished_frame_bytes_max = 256M"))
        }
    }

    @Test func unusableFilesAreNamedAtStart() async throws {
        // Proves a missing CA bundle, a key that is not the certificate's, and an expired certificate each stop the
        // role before it serves, with a message naming the file.
        let dir = TempDir("dlog-tls-config")
        let tls = try await TLSFixture(in: dir.path)
        func identity(_ certificate: String, _ key: String, _ ca: String) -> String {
            var s = TLSSettings()
            s.mode = .required
            (s.certificateFile, s.keyFile, s.caFile) = (certificate, key, ca)
            do {
                _ = try s.identity()
                return "accepted"
            } catch {
                return error.description
            }
        }
        let ca = tls.dir + "/ca"
        func mode(_ path: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1 }
        #expect(mode("\(ca)/ca.key") == 0o600, "the CA's key is root's alone, never the daemons' group's")
        #expect(mode("\(ca)/ca.crt") == 0o644 && mode("\(ca)/bookie.crt") == 0o644)
        #expect([0o600, 0o640].contains(mode("\(ca)/bookie.key")), "a daemon's key: 0640 with group dlog, else 0600")
        #expect(identity("\(ca)/bookie.crt", "\(ca)/bookie.key", tls.ca) == "accepted")
        let missing = identity("\(ca)/bookie.crt", "\(ca)/bookie.key", dir.sub("none.pem"))
        #expect(missing.contains("TLS CA bundle \(dir.sub("none.pem"))"), "\(missing)")
        let mismatched = identity("\(ca)/bookie.crt", "\(ca)/proxy.key", tls.ca)
        #expect(mismatched.contains("\(ca)/proxy.key is not the key of certificate \(ca)/bookie.crt"), "\(mismatched)")
        let expired = identity("\(ca)/expired.crt", "\(ca)/expired.key", tls.ca)
        #expect(expired.contains("\(ca)/expired.crt expired at"), "\(expired)")

        let config = dir.sub("bad.conf")
        try "tls_mode = required\ntls_cert_file = \(ca)/bookie.crt\ntls_key_file = \(ca)/proxy.key\ntls_ca_file = \(tls.ca)\ndata_dir = \(dir.sub("m"))\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try DaemonProcess(["--config", config], role: "metadata")
        #expect(await refused.exited() == 2, "a bad TLS file is a configuration error")
        #expect(refused.stderr.contains("is not the key of certificate"), "\(refused.stderr)")
    }

    @Test func anOptionalPortServesPlaintextAndTLSAndStillChecksCertificatesShown() async throws {
        // Proves a metadata port in tls_mode optional serves a plaintext client, a TLS client with a good
        // certificate and one with none, and refuses one whose certificate another CA signed.
        let dir = TempDir("dlog-tls-optional")
        let tls = try await TLSFixture(in: dir.path)
        var s = TLSSettings()
        s.mode = .optional
        (s.certificateFile, s.keyFile, s.caFile) = (tls.dir + "/ca/metadata.crt", tls.dir + "/ca/metadata.key", tls.ca)
        let store = try EmbeddedStore(.init(directory: dir.sub("store")))
        defer { store.shutdownAndWait() }
        let server = try MetadataServer(store: store, host: "127.0.0.1", port: 0,
                                        tls: s.server(try s.identity(), logger: Logger(label: "test")),
                                        logger: Logger(label: "test"))
        defer { server.close() }
        let port = try #require(server.localAddress?.port)
        func call(_ identity: TLSIdentity?) async -> String {
            let client = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: port)], requestTimeout: .seconds(5),
                                     tls: identity)
            defer { Task { await client.shutdown() } }
            do {
                _ = try await client.range(.prefix("/"), limit: 1)
                return "served"
            } catch {
                return "\(error)"
            }
        }
        #expect(await call(nil) == "served", "plaintext")
        #expect(await call(try tls.client("admin")) == "served", "TLS with a certificate")
        #expect(await call(try tls.client(nil)) == "served", "TLS without a certificate")
        let stranger = await call(try tls.client("stranger", from: "other"))
        #expect(stranger.contains("does not trust the CA"), "\(stranger)")
        #expect(await call(nil) == "served", "plaintext after a refusal")
    }

    @Test func aClientThatNeverFinishesItsHandshakeIsClosedAfterTheTimeout() async throws {
        // Proves a connection to a TLS port that sends nothing, and one that sends half a TLS hello, are closed
        // after the handshake timeout and reported with the peer and the reason.
        let dir = TempDir("dlog-tls-handshake")
        let tls = try await TLSFixture(in: dir.path)
        let identity = try TLSIdentity(files: TLSFiles(certificateChain: tls.dir + "/ca/metadata.crt",
                                                       privateKey: tls.dir + "/ca/metadata.key", caBundle: tls.ca))
        let refusals = Mutex<[String]>([])
        let store = try EmbeddedStore(.init(directory: dir.sub("store")))
        defer { store.shutdownAndWait() }
        for mode in [TLSMode.required, .optional] {
            let server = try MetadataServer(
                store: store, host: "127.0.0.1", port: 0,
                tls: ServerTLS(identity: identity, mode: mode, handshakeTimeout: .milliseconds(300)) { refusal in
                    refusals.withLock { $0.append(refusal.description) }
                },
                logger: Logger(label: "test"))
            defer { server.close() }
            let port = try #require(server.localAddress?.port)
            let silent = try #require(RawConnection(port: port))
            let halfHello = try #require(RawConnection(port: port))
            halfHello.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            #expect(await halfHello.closedByPeer(within: .seconds(3)), "\(mode): a half-sent hello is cut off")
            if mode == .required {
                #expect(await silent.closedByPeer(within: .seconds(3)), "a silent client is cut off")
            }
        }
        let seen = refusals.withLock { $0 }
        #expect(seen.count >= 3 && seen.allSatisfy { $0.contains("TLS connection from 127.0.0.1:") }
                && seen.contains { $0.contains("no TLS handshake within 0.3 seconds") }, "\(seen)")
    }

    @Test func aStandaloneWithTLSMakesItsCAOnFirstStartAndKeepsItAfter() async throws {
        // Proves `dlogd standalone --tls-mode required` makes a CA and certificates under DATA/tls on first start and
        // says how to connect, that dlogctl writes and reads through it with the admin certificate, that a
        // plaintext dlogctl is told the port speaks TLS, and that a restart keeps the same CA.
        let dir = TempDir("dlog-standalone-tls")
        var started: (DaemonProcess, Int)?
        for _ in 0..<5 where started == nil {
            let base = Int.random(in: 20_000...50_000)
            started = try? await (DaemonProcess.start(["--data", dir.sub("data"), "--base-port", "\(base)", "--tls-mode", "required"],
                                                      role: "standalone"), base)
        }
        var (daemon, base) = try #require(started)
        let tls = dir.sub("data/tls")
        #expect(daemon.output.stdout.contains("clients use --tls-ca \(tls)/ca.crt --tls-cert \(tls)/admin.crt"), "\(daemon.output.stdout)")
        let client = ["--tls-ca", tls + "/ca.crt", "--tls-cert", tls + "/admin.crt", "--tls-key", tls + "/admin.key"]
        let proxy = ["--proxy", "127.0.0.1:\(base + 10)"], metadata = ["--metadata", "dlog://127.0.0.1:\(base)"]
        let input = dir.sub("lines.txt")
        try "one\ntwo\n".write(toFile: input, atomically: true, encoding: .utf8)
        let wrote = try await runTool(dlogctlPath, ["write", "secure", "--file", input] + proxy + client)
        #expect(wrote.status == 0, "\(wrote.stdout)\(wrote.stderr)")
        let plain = try await runTool(dlogctlPath, ["read", "secure"] + metadata)
        #expect(plain.status != 0 && plain.stderr.contains("the peer speaks TLS and this side does not"), "\(plain.stderr)")
        let ca = try String(contentsOfFile: tls + "/ca.crt", encoding: .utf8)

        daemon.kill(SIGTERM)
        #expect(await daemon.exited() == 0)
        daemon = try await DaemonProcess.start(["--data", dir.sub("data"), "--base-port", "\(base)", "--tls-mode", "required"],
                                               role: "standalone")
        defer { daemon.kill(SIGKILL) }
        #expect(try String(contentsOfFile: tls + "/ca.crt", encoding: .utf8) == ca, "the CA is kept")
        let read = try await runTool(dlogctlPath, ["read", "secure"] + metadata + client)
        #expect(read.status == 0 && read.stdout.contains("one") && read.stdout.contains("two"), "\(read.stdout)\(read.stderr)")
    }

    @Test func theMetricsPortSpeaksHTTPSWhenTheRolesPortRequiresTLS() async throws {
        // Proves a role with tls_mode = required serves its metrics over HTTPS to a scraper with a certificate the
        // cluster CA signed (curl, as Prometheus would scrape), and refuses one without a certificate and a
        // plaintext one.
        let dir = TempDir("dlog-tls-metrics")
        let tls = try await TLSFixture(in: dir.path)
        try (tls.config("metadata") + "data_dir = \(dir.sub("m"))\nmetrics_port = 0\n")
            .write(toFile: dir.sub("m.conf"), atomically: true, encoding: .utf8)
        let metadata = try await DaemonProcess.start(["--config", dir.sub("m.conf")], role: "metadata")
        defer { metadata.kill(SIGKILL) }
        var port = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while port == 0 && ContinuousClock.now < deadline {
            if let line = metadata.stderr.split(separator: "\n").first(where: { $0.contains("metrics serving") }),
               let range = line.range(of: "address=127.0.0.1:") {
                port = Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(port != 0, "the metrics port is logged: \(metadata.stderr)")
        let url = "https://127.0.0.1:\(port)/metrics"
        let scrape = try await runTool("/usr/bin/curl", ["-sS", "--max-time", "5", "--cacert", tls.ca,
                                                         "--cert", tls.dir + "/ca/watcher.crt", "--key", tls.dir + "/ca/watcher.key", url])
        #expect(scrape.status == 0 && scrape.stdout.contains("dlog_metadata_revision"), "\(scrape.stdout)\(scrape.stderr)")
        let anonymous = try await runTool("/usr/bin/curl", ["-sS", "--max-time", "5", "--cacert", tls.ca, url])
        #expect(anonymous.status != 0 && !anonymous.stdout.contains("dlog_metadata_revision"), "\(anonymous.stdout)")
        let plaintext = try await runTool("/usr/bin/curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"])
        #expect(plaintext.status != 0 && !plaintext.stdout.contains("dlog_metadata_revision"), "\(plaintext.stdout)")
    }
}
