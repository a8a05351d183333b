import ArgumentParser
import DLogWire
import Foundation

/// `--tls-ca`, `--tls-cert`, `--tls-key` (or DLOG_TLS_CA, DLOG_TLS_CERT, DLOG_TLS_KEY): TLS to the cluster's
/// ports, for every command of `dlogctl` and `dlog-bench` that reaches one. Without a CA, plaintext.
public struct TLSClientOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("tls-ca"), help: "CA bundle (PEM) the servers' certificates are checked against; turns TLS on.")
    public var ca: String?
    @Option(name: .customLong("tls-cert"), help: "This client's certificate (PEM), for ports that require one.")
    public var certificate: String?
    @Option(name: .customLong("tls-key"), help: "The private key (PEM) of --tls-cert.")
    public var key: String?

    public init() {}

    public func identity() throws -> TLSIdentity? {
        do {
            return try TLSIdentity.forClient(ca: ca, certificate: certificate, key: key,
                                             environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
