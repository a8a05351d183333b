import ArgumentParser
import DLogCLI
import DLogPKI
import DLogWire
import Foundation

struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls", abstract: "A small cluster CA and its certificates, for clusters without a PKI of their own.",
        subcommands: [InitCA.self, Issue.self])

    struct InitCA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init-ca", abstract: "Create DIR/ca.crt and DIR/ca.key (refuses to replace them).")
        @Option(help: "Where the CA's files go.") var dir = "/etc/dlog/tls"
        @Option(help: "The CA's common name.") var name = "DistributedLog cluster CA"
        @Option(help: "Days the CA is valid.") var days = 3650

        func run() throws {
            guard days > 0 else { throw ValidationError("--days must be at least 1") }
            let certificate = dir + "/ca.crt", key = dir + "/ca.key"
            for path in [certificate, key] where FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(path) exists; a cluster keeps its CA (remove it by hand to start over)")
            }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let ca = try ClusterCA.create(name: name, days: days)
            // The CA's key is for this host's root only, never for the daemons' group.
            try PEMFiles.write(ca.keyPEM, to: key, secret: true, forDaemons: false)
            try PEMFiles.write(try ca.certificatePEM, to: certificate, secret: false)
            print("wrote \(certificate) and \(key) (keep the key offline or readable by root only)")
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue", abstract: "Sign a certificate for a daemon or a client with the CA in --dir.")
        @Option(help: "Where ca.crt and ca.key are.") var dir = "/etc/dlog/tls"
        @Option(help: "bookie, proxy, metadata (daemons: server and client use); admin, monitor (read-only) or client (an application; client use only).")
        var role: String
        @Option(help: "The certificate's name (its common name): a host name, or a client's principal.") var name: String
        @Option(help: "A DNS name or IP address the daemon is reached by; repeat for each (daemons need one).")
        var host: [String] = []
        @Option(help: "Days the certificate is valid.") var days = 825
        @Option(help: "Where NAME.crt and NAME.key go (default: --dir).") var out: String?

        func run() throws {
            guard let role = ClusterCA.Role(rawValue: role) else {
                throw ValidationError("--role \(role): allowed: \(ClusterCA.Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard days > 0 else { throw ValidationError("--days must be at least 1") }
            guard !name.isEmpty, !name.contains("/") else { throw ValidationError("--name must be non-empty, without '/'") }
            let ca: ClusterCA
            do {
                ca = try ClusterCA(certificatePEM: try String(contentsOfFile: dir + "/ca.crt", encoding: .utf8),
                                   keyPEM: try String(contentsOfFile: dir + "/ca.key", encoding: .utf8))
            } catch {
                throw ValidationError("cannot load the CA from \(dir)/ca.crt and \(dir)/ca.key (run `dlogctl tls init-ca --dir \(dir)` first): \(error)")
            }
            let issued: (certificatePEM: String, keyPEM: String)
            do {
                issued = try ca.issue(role: role, name: name, hosts: host, days: days)
            } catch {
                throw ValidationError("\(error)")
            }
            let folder = out ?? dir
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try PEMFiles.write(issued.keyPEM, to: "\(folder)/\(name).key", secret: true)
            try PEMFiles.write(issued.certificatePEM, to: "\(folder)/\(name).crt", secret: false)
            print("wrote \(folder)/\(name).crt and \(folder)/\(name).key (\(role.rawValue), valid \(days) days)")
        }
    }
}
