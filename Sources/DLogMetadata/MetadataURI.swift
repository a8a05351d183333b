import DLogWire

/// Which metadata store a role or tool uses, as written in configs and on command lines:
///
///     dlog://host:port[,host:port...][/]          the metadata role (embedded store)
///     etcd://host:port[,host:port...][/prefix]    an etcd v3 cluster; keys live under /prefix (default /dlog)
public struct MetadataURI: Hashable, Sendable, CustomStringConvertible {
    public enum Backend: String, Sendable {
        case dlog
        case etcd
    }

    public var backend: Backend
    public var endpoints: [RemoteStore.Endpoint]
    /// Only for etcd: the key prefix every key of this cluster lives under.
    public var prefix: String

    public static let defaultEtcdPrefix = "/dlog"

    public init(backend: Backend, endpoints: [RemoteStore.Endpoint], prefix: String = "") {
        self.backend = backend
        self.endpoints = endpoints
        self.prefix = prefix
    }

    public init(parsing text: String) throws(MetadataError) {
        let usage = "expected dlog://host:port[,host:port] or etcd://host:port[,host:port][/prefix]"
        guard let schemeEnd = text.range(of: "://") else {
            throw .invalidArgument("metadata URI \(text.debugDescription) has no scheme; \(usage)")
        }
        guard let backend = Backend(rawValue: String(text[..<schemeEnd.lowerBound])) else {
            throw .invalidArgument("metadata URI \(text.debugDescription) has unknown scheme \(text[..<schemeEnd.lowerBound].debugDescription); \(usage)")
        }
        var rest = text[schemeEnd.upperBound...]
        var path = ""
        if let slash = rest.firstIndex(of: "/") {
            path = String(rest[slash...])
            rest = rest[..<slash]
        }
        var endpoints: [RemoteStore.Endpoint] = []
        for part in rest.split(separator: ",", omittingEmptySubsequences: false) {
            guard let colon = part.lastIndex(of: ":"), colon != part.startIndex,
                  let port = Int(part[part.index(after: colon)...]), (1...65535).contains(port) else {
                throw .invalidArgument("metadata URI \(text.debugDescription): \(String(part).debugDescription) is not host:port with a port in 1...65535")
            }
            var host = String(part[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            endpoints.append(RemoteStore.Endpoint(host: host, port: port))
        }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        switch backend {
        case .dlog:
            guard path.isEmpty || path == "/" else {
                throw .invalidArgument("metadata URI \(text.debugDescription): dlog:// takes no path (got \(path))")
            }
            path = ""
        case .etcd:
            if path.isEmpty || path == "/" { path = Self.defaultEtcdPrefix }
            try MetadataLimits.validate(key: path)
        }
        self.init(backend: backend, endpoints: endpoints, prefix: path)
    }

    public var description: String {
        "\(backend.rawValue)://" + endpoints.map(\.description).joined(separator: ",") + prefix
    }
}

extension MetadataURI {
    /// A client of the store this URI names. Connections are made lazily, on first use; with `tls` they speak
    /// TLS.
    public func connect(requestTimeout: Duration = .seconds(10), tls: TLSIdentity? = nil) throws(MetadataError) -> any MetadataStore {
        switch backend {
        case .dlog:
            return RemoteStore(endpoints: endpoints, requestTimeout: requestTimeout, tls: tls)
        case .etcd:
            var configuration = EtcdStore.Configuration()
            configuration.tls = tls
            configuration.requestTimeout = requestTimeout
            return try EtcdStore(endpoints: endpoints.map { ($0.host, $0.port) }, prefix: prefix,
                                 configuration: configuration)
        }
    }

    /// Parses and connects in one step, for command-line tools and config values.
    public static func connect(_ text: String, requestTimeout: Duration = .seconds(10),
                               tls: TLSIdentity? = nil) throws(MetadataError) -> any MetadataStore {
        try MetadataURI(parsing: text).connect(requestTimeout: requestTimeout, tls: tls)
    }
}
