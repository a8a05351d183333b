import DLogPKI
import DLogTestSupport
import DLogWire
import Foundation

/// A cluster CA and certificates for TLS tests, made the way an operator makes them (`dlogctl tls init-ca`,
/// `dlogctl tls issue`), plus the bad ones a test needs: a client of another CA, and an expired client.
struct TLSFixture {
    let dir: String
    var ca: String { dir + "/ca/ca.crt" }

    init(in dir: String) async throws {
        self.dir = dir
        try await Self.tool(["tls", "init-ca", "--dir", dir + "/ca"])
        for role in ["metadata", "bookie", "proxy"] {
            try await Self.tool(["tls", "issue", "--dir", dir + "/ca", "--role", role, "--name", role, "--host", "127.0.0.1"])
        }
        try await Self.tool(["tls", "issue", "--dir", dir + "/ca", "--role", "admin", "--name", "admin"])
        try await Self.tool(["tls", "issue", "--dir", dir + "/ca", "--role", "monitor", "--name", "watcher"])
        for app in ["app1", "app2"] {
            try await Self.tool(["tls", "issue", "--dir", dir + "/ca", "--role", "client", "--name", app])
        }
        try await Self.tool(["tls", "init-ca", "--dir", dir + "/other", "--name", "another cluster"])
        try await Self.tool(["tls", "issue", "--dir", dir + "/other", "--role", "admin", "--name", "stranger"])
        // Valid for a day that ended a week ago: dlogctl issues nothing already expired, the CA type does.
        let authority = try ClusterCA(certificatePEM: try String(contentsOfFile: ca, encoding: .utf8),
                                      keyPEM: try String(contentsOfFile: dir + "/ca/ca.key", encoding: .utf8))
        let weekAgo = Date().addingTimeInterval(-7 * 86_400)
        let expired = try authority.issue(role: .admin, name: "expired", hosts: [], days: 1, now: weekAgo)
        try expired.certificatePEM.write(toFile: dir + "/ca/expired.crt", atomically: true, encoding: .utf8)
        try expired.keyPEM.write(toFile: dir + "/ca/expired.key", atomically: true, encoding: .utf8)
    }

    /// The config lines of a daemon of `role` with TLS in `mode`.
    func config(_ role: String, mode: TLSMode = .required) -> String {
        """
        tls_mode = \(mode.rawValue)
        tls_cert_file = \(dir)/ca/\(role).crt
        tls_key_file = \(dir)/ca/\(role).key
        tls_ca_file = \(ca)

        """
    }

    /// A client identity: `name`'s certificate from the cluster CA (`ca`) or the other one (`other`); nil name: a
    /// client that trusts the cluster CA but shows no certificate.
    func client(_ name: String?, from authority: String = "ca") throws -> TLSIdentity {
        try TLSIdentity(files: TLSFiles(certificateChain: name.map { "\(dir)/\(authority)/\($0).crt" },
                                        privateKey: name.map { "\(dir)/\(authority)/\($0).key" }, caBundle: ca),
                        refusesExpired: name != "expired")
    }

    /// dlogctl's arguments for the admin client.
    var adminArguments: [String] {
        ["--tls-ca", ca, "--tls-cert", dir + "/ca/admin.crt", "--tls-key", dir + "/ca/admin.key"]
    }

    @discardableResult
    static func tool(_ arguments: [String]) async throws -> String {
        let run = try await runTool(dlogctlPath, arguments)
        guard run.status == 0 else { throw DaemonError("dlogctl \(arguments.joined(separator: " ")): \(run.stderr)") }
        return run.stdout
    }
}
