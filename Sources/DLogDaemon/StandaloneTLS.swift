import DLogPKI
import DLogWire
import Foundation

/// A standalone's TLS (`tls_mode` in its config): on first start it makes a CA and a certificate for each role
/// it runs, plus one for the user's `dlogctl`, under DATA/tls/; later starts use them as they are.
enum StandaloneTLS {
    static let roles: [ClusterCA.Role] = [.metadata, .bookie, .proxy, .admin]

    /// The settings the standalone's `role` runs with (`prepare` made the files).
    static func settings(mode: TLSMode, dataDirectory: String, role: ClusterCA.Role) -> TLSSettings {
        var settings = TLSSettings()
        settings.mode = mode
        guard mode != .off else { return settings }
        let dir = dataDirectory + "/tls"
        settings.caFile = dir + "/ca.crt"
        settings.certificateFile = "\(dir)/\(role.rawValue).crt"
        settings.keyFile = "\(dir)/\(role.rawValue).key"
        return settings
    }

    /// Makes DATA/tls/ with a CA and every role's certificate (for `host`, 127.0.0.1 and localhost) unless the
    /// CA is there already. Returns whether it made them.
    static func prepare(dataDirectory: String, host: String) throws -> Bool {
        let dir = dataDirectory + "/tls"
        if FileManager.default.fileExists(atPath: dir + "/ca.crt") { return false }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let ca = try ClusterCA.create(name: "DistributedLog standalone CA", days: 3650)
        let hosts = Array(Set([host, "127.0.0.1", "localhost"])).sorted()
        for role in roles {
            let issued = try ca.issue(role: role, name: role == .admin ? "admin" : "standalone-\(role.rawValue)",
                                      hosts: role == .admin ? [] : hosts, days: 3650)
            try PEMFiles.write(issued.keyPEM, to: "\(dir)/\(role.rawValue).key", secret: true, forDaemons: false)
            try PEMFiles.write(issued.certificatePEM, to: "\(dir)/\(role.rawValue).crt", secret: false)
        }
        try PEMFiles.write(ca.keyPEM, to: dir + "/ca.key", secret: true, forDaemons: false)
        // The CA's certificate last: its presence says the directory is complete.
        try PEMFiles.write(try ca.certificatePEM, to: dir + "/ca.crt", secret: false)
        return true
    }
}
