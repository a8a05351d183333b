import DLogMetadata
import DLogPKI
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// The etcd backend over HTTPS with client certificates, against a real etcd started with `--client-cert-auth`.
@Suite(.serialized) struct EtcdTLSTests {
    @Test func theEtcdBackendSpeaksTLSWithAClientCertificateAndEtcdRefusesOthers() async throws {
        // Proves a store with this process's certificate writes and reads through an etcd that requires client
        // certificates, given as a metadata URI with TLS as a role connects; and that a client without a
        // certificate, one of another CA, and a plaintext one are refused with errors naming the cause.
        let dir = TempDir("dlog-etcd-tls")
        let ca = try ClusterCA.create(name: "etcd test CA", days: 1)
        let other = try ClusterCA.create(name: "another CA", days: 1)
        func write(_ text: String, _ name: String) throws -> String {
            try text.write(toFile: dir.sub(name), atomically: true, encoding: .utf8)
            return dir.sub(name)
        }
        let caFile = try write(try ca.certificatePEM, "ca.crt")
        let server = try ca.issue(role: .metadata, name: "etcd", hosts: ["127.0.0.1"], days: 1)
        let client = try ca.issue(role: .bookie, name: "bookie-1", hosts: ["127.0.0.1"], days: 1)
        let stranger = try other.issue(role: .bookie, name: "stranger", hosts: ["127.0.0.1"], days: 1)
        func identity(_ issued: (certificatePEM: String, keyPEM: String)?, _ name: String) throws -> TLSIdentity {
            try TLSIdentity(files: TLSFiles(certificateChain: try issued.map { try write($0.certificatePEM, name + ".crt") },
                                            privateKey: try issued.map { try write($0.keyPEM, name + ".key") }, caBundle: caFile))
        }
        let good = try identity(client, "client")
        let etcd = try await EtcdServer.start(tls: EtcdServer.TLS(certificate: try write(server.certificatePEM, "etcd.crt"),
                                                                  key: try write(server.keyPEM, "etcd.key"), ca: caFile,
                                                                  client: good))
        defer { etcd.stop() }

        let store = try MetadataURI.connect(etcd.uri(prefix: "/tls"), requestTimeout: .seconds(5), tls: good)
        _ = try await store.create("/tls/key", value: Array("secret".utf8))
        #expect(try await store.get("/tls/key")?.value == Array("secret".utf8))
        await store.shutdown()

        func refusal(_ tls: TLSIdentity?) async -> String {
            var configuration = EtcdStore.Configuration()
            configuration.requestTimeout = .seconds(3)
            configuration.tls = tls
            do {
                let store = try EtcdStore(endpoints: etcd.endpoints, prefix: "/tls", configuration: configuration)
                defer { Task { await store.shutdown() } }
                _ = try await store.get("/tls/key")
                return "served"
            } catch {
                return "\(error)"
            }
        }
        let none = await refusal(try identity(nil, "none"))
        #expect(none.contains("requires a client certificate") || none.contains("refused this certificate"), "\(none)")
        let foreign = await refusal(try identity(stranger, "stranger"))
        #expect(foreign.contains("does not trust the CA") || foreign.contains("refused this certificate"), "\(foreign)")
        let plaintext = await refusal(nil)
        #expect(plaintext != "served", "\(plaintext)")
    }
}
