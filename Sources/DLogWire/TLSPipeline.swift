import NIOCore
import NIOSSL
import NIOTLS
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How a role's port speaks TLS: its identity, its mode (`optional` or `required`; `off` is no `ServerTLS` at
/// all), how long a client has to finish its handshake, and where a refused connection is reported.
public struct ServerTLS: Sendable {
    public var identity: TLSIdentity
    public var mode: TLSMode
    public var handshakeTimeout: Duration
    /// Which part of a client's certificate names its principal.
    public var principalSource: Principal.Source
    /// Called on the connection's event loop for every connection refused during its handshake.
    public var refused: @Sendable (TLSRefusal) -> Void

    public init(identity: TLSIdentity, mode: TLSMode, handshakeTimeout: Duration = .seconds(10),
                principalSource: Principal.Source = .cn, refused: @escaping @Sendable (TLSRefusal) -> Void) {
        precondition(mode != .off, "a port in tls_mode off has no ServerTLS")
        self.identity = identity
        self.mode = mode
        self.handshakeTimeout = handshakeTimeout
        self.principalSource = principalSource
        self.refused = refused
    }

    /// Puts TLS in front of a new connection's pipeline: at once when TLS is required, else after its first
    /// byte shows whether the client speaks TLS. For any server on the port's identity (the metrics port's too).
    public func add(to channel: Channel) throws {
        if mode == .required {
            try channel.pipeline.syncOperations.addHandlers(handlers(for: channel))
        } else {
            try channel.pipeline.syncOperations.addHandler(TLSDetector(tls: self))
        }
    }

    func handlers(for channel: Channel) throws -> [any ChannelHandler] {
        guard let context = identity.serverContext(mode) else {
            // TLSSettings refuses a server mode without a certificate before any port opens.
            preconditionFailure("a TLS port needs a certificate and key")
        }
        return [NIOSSLServerHandler(context: context),
                TLSHandshakeGuard(peer: Self.describe(channel.remoteAddress), timeout: handshakeTimeout,
                                  refused: refused, principalSource: principalSource)]
    }

    static func describe(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown peer" }
        return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    }
}

/// A connection refused before its TLS session was set up: who, and why in words an operator can act on.
public struct TLSRefusal: Sendable, CustomStringConvertible {
    public var peer: String
    public var reason: String
    public var description: String { "TLS connection from \(peer) refused: \(reason)" }
}

/// A connection whose TLS failed, as the client sees it: the peer and the reason, in words.
public struct TLSConnectionError: Error, CustomStringConvertible {
    public var peer: String
    public var reason: String
    public var description: String { "TLS with \(peer) failed: \(reason)" }
}

/// Why TLS ended a client connection, kept for the calls that find it closed afterwards: a TLS 1.3 server
/// refuses a client's certificate after the client's handshake is done, and its alert may close the connection
/// before the client wrote anything, so nothing on the connection would say why.
public final class TLSFailureRecord: Sendable {
    private let failure = Mutex<TLSConnectionError?>(nil)
    public init() {}
    public var error: TLSConnectionError? { failure.withLock { $0 } }
    func record(_ error: TLSConnectionError) { failure.withLock { if $0 == nil { $0 = error } } }
    /// Forgets the reason: for a client that reuses one record for its next connection.
    public func reset() { failure.withLock { $0 = nil } }
}

/// Sits behind the TLS handler. Until the handshake completes it bounds its time (a client that connects and
/// never finishes is closed), turns a failure into words and reports it; afterwards it turns a TLS alert the peer
/// sends into the same words. In TLS 1.3 a server checks the client's certificate after the client thinks the
/// handshake done, so a client learns of a refused certificate only here.
final class TLSHandshakeGuard: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    let peer: String
    let timeout: Duration
    /// A server reports refusals; a client fails `completed` instead.
    let refused: (@Sendable (TLSRefusal) -> Void)?
    let completed: EventLoopPromise<Void>?
    /// The host the client expected the certificate to name.
    let expectedHost: String?
    let record: TLSFailureRecord?
    /// A server's: which part of the client's certificate names its principal (`PeerPrincipal`).
    let principalSource: Principal.Source?
    private var done = false
    private var timer: Scheduled<Void>?

    init(peer: String, timeout: Duration, refused: (@Sendable (TLSRefusal) -> Void)? = nil,
         completed: EventLoopPromise<Void>? = nil, expectedHost: String? = nil, record: TLSFailureRecord? = nil,
         principalSource: Principal.Source? = nil) {
        self.peer = peer
        self.timeout = timeout
        self.refused = refused
        self.completed = completed
        self.expectedHost = expectedHost
        self.record = record
        self.principalSource = principalSource
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let (seconds, attoseconds) = timeout.components
        timer = context.eventLoop.assumeIsolated().scheduleTask(
            in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) { [self] in
            fail(context: context, reason: "no TLS handshake within \(timeout)")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        if !done { completed?.fail(TLSConnectionError(peer: peer, reason: "the connection closed during the TLS handshake")) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, !done {
            if let expectedHost, !TLSIdentity.isIPAddress(expectedHost),
               let leaf = Self.peerCertificate(context), !Self.names(leaf, expectedHost) {
                return fail(context: context, reason: TLSFailure.hostMismatch(expectedHost))
            }
            done = true
            timer?.cancel()
            completed?.succeed()
            context.fireUserInboundEventTriggered(event)
            if let principalSource {
                let principal = Self.peerCertificate(context).flatMap { Principal.from($0, source: principalSource) }
                context.fireUserInboundEventTriggered(PeerPrincipal(principal: principal))
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            timer?.cancel()
            completed?.fail(TLSConnectionError(peer: peer, reason: "the peer closed the connection during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason = TLSFailure.reason(error, peerCertificate: Self.peerCertificate(context), expectedHost: expectedHost)
        if done {
            // After the handshake: a TLS alert in words, on to the connection's handler; anything else as it is.
            guard let reason else { return context.fireErrorCaught(error) }
            let failure = TLSConnectionError(peer: peer, reason: reason)
            record?.record(failure)
            return context.fireErrorCaught(failure)
        }
        fail(context: context, reason: reason ?? "\(error)")
    }

    private func fail(context: ChannelHandlerContext, reason: String) {
        guard !done else { return }
        done = true
        timer?.cancel()
        refused?(TLSRefusal(peer: peer, reason: reason))
        let error = TLSConnectionError(peer: peer, reason: reason)
        record?.record(error)
        completed?.fail(error)
        // The connection's handler fails what waits on it with this error, then closes.
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    /// Whether `leaf` names `host` among its DNS names (a "*." name covers one label). NIOSSL also takes an IP
    /// entry that matches the address connected to, whatever name was asked for; a client that connects by
    /// name wants the server that name belongs to, not any member of the cluster at that address.
    static func names(_ leaf: NIOSSLCertificate, _ host: String) -> Bool {
        let wanted = host.lowercased().hasSuffix(".") ? String(host.lowercased().dropLast()) : host.lowercased()
        for name in leaf._subjectAlternativeNames() where name.nameType == .dnsName {
            let dns = String(decoding: Array(name.contents), as: UTF8.self).lowercased()
            if dns == wanted { return true }
            if dns.hasPrefix("*."), let dot = wanted.firstIndex(of: "."), wanted[dot...] == dns.dropFirst() { return true }
        }
        return false
    }

    private static func peerCertificate(_ context: ChannelHandlerContext) -> NIOSSLCertificate? {
        (try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self))?.peerCertificate
    }
}

/// What BoringSSL's error codes mean for the operator, from either side of the connection.
enum TLSFailure {
    static func hostMismatch(_ host: String) -> String {
        "the server's certificate does not name \(host) (issue it with --host for every name and address clients use)"
    }

    /// The reason in words, or nil for an error that is not about TLS.
    static func reason(_ error: any Error, peerCertificate: NIOSSLCertificate?, expectedHost: String?) -> String? {
        if let error = error as? TLSConnectionError { return error.reason }
        let text = "\(error)"
        if error is NIOSSLExtraError, text.contains("ailed to validate hostname") || text.contains("hostname") {
            return hostMismatch(expectedHost ?? "the host connected to")
        }
        guard error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError else { return nil }
        let table: [(String, String)] = [
            ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "the client showed no certificate; this port requires one signed by the cluster CA"),
            ("CERTIFICATE_REQUIRED", "the server requires a client certificate; set tls_cert_file and tls_key_file (or --tls-cert and --tls-key)"),
            ("UNKNOWN_CA", "the server does not trust the CA that signed this certificate"),
            ("CERTIFICATE_EXPIRED", "the server refused this certificate as expired or not yet valid"),
            ("BAD_CERTIFICATE", "the server refused this certificate"),
            ("WRONG_VERSION_NUMBER", "the peer does not speak TLS (is its tls_mode off?)"),
            ("HTTP_REQUEST", "the peer does not speak TLS"),
        ]
        for (code, reason) in table where text.contains(code) { return reason }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            if let certificate = peerCertificate {
                let now = time(nil)
                if certificate.notValidAfter < now {
                    return "the peer's certificate expired at \(TLSIdentity.describeTime(Int(certificate.notValidAfter)))"
                }
                if certificate.notValidBefore > now {
                    return "the peer's certificate is not valid before \(TLSIdentity.describeTime(Int(certificate.notValidBefore)))"
                }
            }
            return "the peer's certificate does not verify against the CA bundle (signed by another CA, expired, or not yet valid)"
        }
        if error is NIOSSLError || error is BoringSSLError { return "TLS error: \(text)" }
        return nil
    }
}

/// On a port in `optional` mode, waits for a new connection's first bytes: a TLS record (0x16, a handshake)
/// puts TLS in front of the pipeline, anything else leaves it plaintext. A frame's first byte is the top of its
/// length, and a frame of 0x16 << 24 bytes (352 MiB) is past every role's frame limit, so nothing is ambiguous.
final class TLSDetector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let handshakeRecord: UInt8 = 0x16
    let tls: ServerTLS

    init(tls: ServerTLS) { self.tls = tls }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Self.unwrapInboundIn(data)
        guard let first = bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) else { return }
        if first == Self.handshakeRecord {
            do {
                try context.pipeline.syncOperations.addHandlers(try tls.handlers(for: context.channel),
                                                                position: .after(self))
            } catch {
                context.fireErrorCaught(error)
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

extension TLSIdentity {
    /// Puts TLS in front of a connected client's pipeline (nothing was written on it yet); the future completes
    /// when the handshake does, or fails with a `TLSConnectionError` naming `host:port` and the reason, after
    /// closing the connection.
    /// `record` keeps the reason TLS ends the connection with, for calls that find it closed later.
    public func secure(_ channel: Channel, host: String, port: Int, handshakeTimeout: Duration = .seconds(10),
                       record: TLSFailureRecord? = nil) -> EventLoopFuture<Void> {
        channel.eventLoop.flatSubmit {
            let completed = channel.eventLoop.makePromise(of: Void.self)
            do {
                try channel.pipeline.syncOperations.addHandlers([
                    try self.clientHandler(host: host),
                    TLSHandshakeGuard(peer: "\(host):\(port)", timeout: handshakeTimeout, completed: completed,
                                      expectedHost: host, record: record),
                ], position: .first)
            } catch {
                channel.close(promise: nil)
                completed.fail(TLSConnectionError(peer: "\(host):\(port)", reason: "\(error)"))
            }
            return completed.futureResult
        }
    }

    /// `secure` after `connect`: the channel once its handshake is done (plaintext when `tls` is nil).
    public static func secure(_ connected: EventLoopFuture<Channel>, with tls: TLSIdentity?, host: String,
                              port: Int, record: TLSFailureRecord? = nil) -> EventLoopFuture<Channel> {
        guard let tls else { return connected }
        return connected.flatMap { channel in tls.secure(channel, host: host, port: port, record: record).map { channel } }
    }
}
