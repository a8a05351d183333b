import NIOSSL
import SwiftASN1
import X509

/// Who is on the other end of a connection to a port in `tls_mode = required`: a name, from the client's
/// certificate, and a role, from its subject's organizational unit (`dlogctl tls issue --role` writes it there;
/// a PKI of one's own does the same). A certificate without a built-in role's OU is an application `client`.
public struct Principal: Sendable, Hashable, CustomStringConvertible {
    public enum Role: String, Sendable, CaseIterable {
        case bookie, proxy, metadata, admin, monitor, client
    }

    public var name: String
    public var role: Role

    public init(name: String, role: Role) {
        self.name = name
        self.role = role
    }

    public var description: String { "\(name) (\(role.rawValue))" }

    /// Which part of a client certificate names its principal (the `tls_principal` key): the subject's common
    /// name, or its first DNS or URI subject alternative name.
    public enum Source: String, Sendable, CaseIterable {
        case cn, dns, uri
    }

    /// The principal `certificate` names; nil when it has no name of that kind.
    public static func from(_ certificate: NIOSSLCertificate, source: Source) -> Principal? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
        var commonName: String?
        var role = Role.client
        for relative in parsed.subject {
            for attribute in relative {
                if attribute.type == .RDNAttributeType.commonName { commonName = String(attribute.value) }
                if attribute.type == .RDNAttributeType.organizationalUnitName, let unit = String(attribute.value),
                   let named = Role(rawValue: unit) {
                    role = named
                }
            }
        }
        let name: String?
        switch source {
        case .cn:
            name = commonName
        case .dns, .uri:
            let names = (try? parsed.extensions.subjectAlternativeNames) ?? nil
            name = names?.lazy.compactMap { entry -> String? in
                switch (source, entry) {
                case (.dns, .dnsName(let dns)): return dns
                case (.uri, .uniformResourceIdentifier(let uri)): return uri
                default: return nil
                }
            }.first
        }
        guard let name, !name.isEmpty else { return nil }
        return Principal(name: name, role: role)
    }
}

/// Sent down a served connection's pipeline once its TLS handshake is done (before any frame): the principal
/// its certificate names, or nil when it showed none (a port in `optional` mode). A handler that checks
/// permissions keeps it.
public struct PeerPrincipal: Sendable {
    public var principal: Principal?
}
