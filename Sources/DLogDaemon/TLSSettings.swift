import DLogWire
import Logging

/// The TLS keys every role's config shares (docs/security.md): how its port speaks TLS, and the files of the one
/// identity it serves with and connects to other roles with.
public struct TLSSettings: Sendable, Hashable {
    public var mode = TLSMode.off
    public var certificateFile: String?
    public var keyFile: String?
    public var caFile: String?
    /// A client that has not finished its TLS handshake this long after connecting is closed.
    public var handshakeTimeoutMillis = 10_000
    /// Which part of a client certificate names its principal.
    public var principalSource = Principal.Source.cn

    public init() {}

    public static let keys: Set<String> = ["tls_mode", "tls_cert_file", "tls_key_file", "tls_ca_file",
                                           "tls_handshake_timeout_ms", "tls_principal"]

    public mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem) {
        if let m = file.string("tls_mode") {
            guard let parsed = TLSMode(rawValue: m) else { throw file.problem("tls_mode", allowed: "off, optional, required") }
            mode = parsed
        }
        if let f = try file.nonEmpty("tls_cert_file", allowed: "a PEM certificate chain file") { certificateFile = f }
        if let f = try file.nonEmpty("tls_key_file", allowed: "a PEM private key file") { keyFile = f }
        if let f = try file.nonEmpty("tls_ca_file", allowed: "a PEM CA bundle file") { caFile = f }
        if let n = try file.int("tls_handshake_timeout_ms", 100...600_000) { handshakeTimeoutMillis = n }
        if let p = file.string("tls_principal") {
            guard let source = Principal.Source(rawValue: p) else {
                throw file.problem("tls_principal", allowed: "cn, dns, uri (the certificate's common name, or its first DNS or URI name)")
            }
            principalSource = source
        }
        if mode != .off {
            let missing = [("tls_cert_file", certificateFile), ("tls_key_file", keyFile), ("tls_ca_file", caFile)]
                .filter { $0.1 == nil }.map(\.0)
            guard missing.isEmpty else {
                throw ConfigFile.Problem(message: "\(file.location("tls_mode")): tls_mode = \(mode.rawValue) needs "
                                             + "\(missing.joined(separator: ", ")) (see docs/security.md; `dlogctl tls` makes them)")
            }
        }
    }

    /// The identity the files make, read and checked now; nil when TLS is off.
    public func identity() throws(TLSConfigError) -> TLSIdentity? {
        guard mode != .off, let certificateFile, let keyFile, let caFile else { return nil }
        return try TLSIdentity(files: TLSFiles(certificateChain: certificateFile, privateKey: keyFile, caBundle: caFile))
    }

    /// The port's side of `identity`: refused handshakes are logged with the peer and the reason.
    public func server(_ identity: TLSIdentity?, logger: Logger) -> ServerTLS? {
        guard let identity, mode != .off else { return nil }
        return ServerTLS(identity: identity, mode: mode, handshakeTimeout: .milliseconds(handshakeTimeoutMillis),
                         principalSource: principalSource) { refusal in
            logger.warning("\(refusal)", metadata: ["peer": "\(refusal.peer)", "reason": "\(refusal.reason)"])
        }
    }

    /// Whether requests are checked against the principal's rights: only where every client has a certificate.
    public var enforcesAuthorization: Bool { mode == .required }

    /// SIGHUP: the same files read again, so rotated certificates serve new connections; open ones keep theirs.
    static func reload(_ identity: TLSIdentity?, logger: Logger) throws {
        guard let identity else { return }
        try identity.reload()
        logger.notice("TLS certificate reloaded", metadata: [
            "cert": "\(identity.files.certificateChain ?? "-")",
            "not_valid_after": "\(identity.notValidAfter.map { TLSIdentity.describeTime($0) } ?? "-")",
        ])
    }
}
