import Crypto
import Foundation
import SwiftASN1
import X509

/// A small certificate authority for a cluster without a PKI of its own (`dlogctl tls init-ca`, `dlogctl tls
/// issue`): a self-signed P-256 CA, and leaf certificates it signs for each role's daemons and for clients.
/// A cluster with a PKI points `tls_cert_file`, `tls_key_file` and `tls_ca_file` at its own files instead.
public struct ClusterCA {
    public let certificate: Certificate
    let key: P256.Signing.PrivateKey

    /// Who a certificate is for (its subject's OU, which the ports read as the principal's role). Daemons serve
    /// and connect (server and client use); `admin`, `monitor` (read-only) and `client` (an application) only
    /// connect.
    public enum Role: String, Sendable, CaseIterable {
        case bookie, proxy, metadata, admin, monitor, client

        var isDaemon: Bool { self == .bookie || self == .proxy || self == .metadata }
    }

    /// A new CA named `name`, valid from an hour ago (clocks of a cluster differ a little) for `days`.
    public static func create(name: String, days: Int, now: Date = Date()) throws -> ClusterCA {
        precondition(days > 0)
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("DistributedLog cluster")
            CommonName(name)
        }
        let certificateKey = Certificate.PrivateKey(key)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: certificateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: certificateKey.publicKey)
            },
            issuerPrivateKey: certificateKey)
        return ClusterCA(certificate: certificate, key: key)
    }

    /// The CA written by `certificatePEM` and `keyPEM` (the files `init-ca` wrote).
    public init(certificatePEM: String, keyPEM: String) throws {
        let certificate = try Certificate(pemEncoded: certificatePEM)
        let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        guard Certificate.PublicKey(key.publicKey) == certificate.publicKey else {
            throw PKIError("the CA key is not the key of the CA certificate")
        }
        self.init(certificate: certificate, key: key)
    }

    init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.key = key
    }

    public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }
    public var keyPEM: String { key.pemRepresentation }

    /// A leaf certificate and its new key. Its subject is CN=`name`, OU=`role`; `hosts` (DNS names or IP
    /// addresses) are the names a daemon is reached by, which clients check. `notValidBefore` defaults to an
    /// hour ago.
    public func issue(role: Role, name: String, hosts: [String], days: Int, now: Date = Date(),
                      notValidBefore: Date? = nil) throws -> (certificatePEM: String, keyPEM: String) {
        guard !name.isEmpty else { throw PKIError("a certificate needs a name (--name)") }
        if role.isDaemon && hosts.isEmpty {
            throw PKIError("a \(role.rawValue) certificate needs the host names or addresses it is reached by (--host)")
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PrivateKey(key).publicKey
        let subject = try DistinguishedName {
            OrganizationName("DistributedLog cluster")
            OrganizationalUnitName(role.rawValue)
            CommonName(name)
        }
        let names = try hosts.map(Self.generalName)
        let usage: [ExtendedKeyUsage.Usage] = role.isDaemon ? [.serverAuth, .clientAuth] : [.clientAuth]
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: notValidBefore ?? now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage(usage)
                if !names.isEmpty { SubjectAlternativeNames(names) }
                AuthorityKeyIdentifier(keyIdentifier: try? certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: Certificate.PrivateKey(self.key))
        return (try leaf.serializeAsPEM().pemString, key.pemRepresentation)
    }

    /// An IP address as an IP entry (4 or 16 bytes), anything else as a DNS name.
    static func generalName(_ host: String) throws -> GeneralName {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v4) { ArraySlice($0) }))
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return .ipAddress(ASN1OctetString(contentBytes: withUnsafeBytes(of: &v6) { ArraySlice($0) }))
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "*" }) else {
            throw PKIError("\(host.debugDescription) is neither an IP address nor a DNS name")
        }
        return .dnsName(host)
    }
}

public struct PKIError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
