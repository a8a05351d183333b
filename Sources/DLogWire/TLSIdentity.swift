import NIOCore
import NIOSSL
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Whether a role's port speaks TLS (the `tls_mode` config key).
///
/// - `off`: plaintext only, and the role's own connections to other roles are plaintext.
/// - `optional`: the port takes TLS and plaintext (told apart by the first byte: a TLS record starts 0x16, a frame
///   with a length that large is refused anyway); a TLS client's certificate is checked when it shows one. The
///   role's own connections use TLS. This is the step a running cluster passes through on its way to `required`.
/// - `required`: TLS only, and every client shows a certificate the cluster CA signed.
public enum TLSMode: String, Sendable, CaseIterable {
    case off, optional, required
}

/// The PEM files of one identity: its certificate chain (leaf first) and private key, and the CA bundle it
/// trusts. A client without a certificate of its own leaves the first two nil (only a port in `optional` mode, or
/// in plaintext, takes it).
public struct TLSFiles: Sendable, Hashable {
    public var certificateChain: String?
    public var privateKey: String?
    public var caBundle: String

    public init(certificateChain: String?, privateKey: String?, caBundle: String) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.caBundle = caBundle
    }
}

/// A TLS file that cannot be used, naming the file and what is wrong with it.
public struct TLSConfigError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One process's TLS: the contexts its port serves with and its own connections to other roles use, made from
/// `files`. `reload()` reads the files again (SIGHUP): new connections use the new certificate, open ones keep
/// theirs, and files that cannot be used change nothing.
public final class TLSIdentity: Sendable {
    public let files: TLSFiles
    /// Whether an expired certificate of its own is refused at load (always, but for a test that needs one).
    let refusesExpired: Bool
    private struct Contexts {
        /// Serves `required` ports: a client certificate signed by the CA, or no connection.
        var requiring: NIOSSLContext?
        /// Serves `optional` ports: a certificate the client shows is checked; none is accepted.
        var accepting: NIOSSLContext?
        var client: NIOSSLContext
        /// The leaf certificate's last valid second (seconds since 1970), for the status line and warnings.
        var notValidAfter: Int?
    }
    private let contexts: Mutex<Contexts>

    public init(files: TLSFiles, refusesExpired: Bool = true) throws(TLSConfigError) {
        self.files = files
        self.refusesExpired = refusesExpired
        contexts = Mutex(try Self.load(files, refusesExpired: refusesExpired))
    }

    /// A command-line client's identity: from its `--tls-ca`, `--tls-cert` and `--tls-key` values, each falling
    /// back to DLOG_TLS_CA, DLOG_TLS_CERT and DLOG_TLS_KEY in `environment`. Without a CA: nil, plaintext.
    public static func forClient(ca: String?, certificate: String?, key: String?,
                                 environment: [String: String]) throws(TLSConfigError) -> TLSIdentity? {
        let ca = ca ?? environment["DLOG_TLS_CA"]
        let certificate = certificate ?? environment["DLOG_TLS_CERT"]
        let key = key ?? environment["DLOG_TLS_KEY"]
        guard let ca else {
            if certificate != nil || key != nil { throw TLSConfigError("--tls-cert and --tls-key need --tls-ca") }
            return nil
        }
        guard (certificate == nil) == (key == nil) else { throw TLSConfigError("--tls-cert and --tls-key go together") }
        return try TLSIdentity(files: TLSFiles(certificateChain: certificate, privateKey: key, caBundle: ca))
    }

    /// Reads the files again; on failure the contexts in use stay and the error says why.
    public func reload() throws(TLSConfigError) {
        let fresh = try Self.load(files, refusesExpired: refusesExpired)
        contexts.withLock { $0 = fresh }
    }

    /// When the leaf certificate stops being valid (seconds since 1970); nil without one.
    public var notValidAfter: Int? { contexts.withLock { $0.notValidAfter } }

    func serverContext(_ mode: TLSMode) -> NIOSSLContext? {
        contexts.withLock { mode == .required ? $0.requiring : $0.accepting }
    }

    var clientContext: NIOSSLContext { contexts.withLock { $0.client } }

    /// The client side of a connection to `host`: the server's certificate must chain to the CA and name `host`
    /// (a DNS name, or for an IP address an IP entry of its subject alternative names).
    public func clientHandler(host: String) throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: clientContext, serverHostname: Self.isIPAddress(host) ? nil : host)
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    private static func load(_ files: TLSFiles, refusesExpired: Bool) throws(TLSConfigError) -> Contexts {
        let roots: [NIOSSLCertificate]
        do {
            roots = try NIOSSLCertificate.fromPEMFile(files.caBundle)
        } catch {
            throw TLSConfigError("TLS CA bundle \(files.caBundle) cannot be read as PEM certificates: \(error)")
        }
        guard !roots.isEmpty else { throw TLSConfigError("TLS CA bundle \(files.caBundle) holds no certificate") }
        var chain: [NIOSSLCertificate] = []
        var key: NIOSSLPrivateKey?
        switch (files.certificateChain, files.privateKey) {
        case (nil, nil):
            break
        case (let certificatePath?, let keyPath?):
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
            } catch {
                throw TLSConfigError("TLS certificate \(certificatePath) cannot be read as PEM certificates: \(error)")
            }
            guard let leaf = chain.first else { throw TLSConfigError("TLS certificate \(certificatePath) holds no certificate") }
            let now = time(nil)
            if refusesExpired && leaf.notValidAfter < now {
                throw TLSConfigError("TLS certificate \(certificatePath) expired at \(Self.describeTime(Int(leaf.notValidAfter))); issue a new one")
            }
            do {
                key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            } catch {
                throw TLSConfigError("TLS private key \(keyPath) cannot be read as a PEM private key: \(error)")
            }
        default:
            throw TLSConfigError("a TLS certificate and its private key go together: set both files or neither")
        }
        func configuration(_ base: TLSConfiguration) -> TLSConfiguration {
            var c = base
            c.minimumTLSVersion = .tlsv12
            c.trustRoots = .certificates(roots)
            c.certificateChain = chain.map { .certificate($0) }
            c.privateKey = key.map { .privateKey($0) }
            return c
        }
        do {
            var client = configuration(.makeClientConfiguration())
            client.certificateVerification = .fullVerification
            var contexts = Contexts(client: try NIOSSLContext(configuration: client),
                                    notValidAfter: chain.first.map { Int($0.notValidAfter) })
            if let key {
                var requiring = configuration(.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                       privateKey: .privateKey(key)))
                requiring.certificateVerification = .noHostnameVerification
                contexts.requiring = try NIOSSLContext(configuration: requiring)
                var accepting = requiring
                accepting.certificateVerification = .optionalVerification
                contexts.accepting = try NIOSSLContext(configuration: accepting)
            }
            return contexts
        } catch NIOSSLError.failedToLoadPrivateKey {
            // BoringSSL checks the key against the leaf certificate as it takes it.
            throw TLSConfigError("TLS private key \(files.privateKey ?? "-") is not the key of certificate \(files.certificateChain ?? "-")")
        } catch {
            throw TLSConfigError("TLS files \(files.certificateChain ?? "-"), \(files.privateKey ?? "-"), \(files.caBundle) cannot make a TLS context: \(error)")
        }
    }

    /// "2027-01-31 12:00:00 UTC" for seconds since 1970.
    public static func describeTime(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }
}
