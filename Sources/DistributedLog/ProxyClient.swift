import DLogMetadata
import Foundation
import DLogWire
import NIOCore
import NIOPosix
import Synchronization

/// A client of the proxy tier: writes, truncates, creates and deletes streams through whichever proxy owns
/// each stream. It remembers owners from redirects; for a stream it has not seen it picks a proxy by
/// rendezvous hashing over the known proxies (the same stream goes to the same proxy while the set holds).
/// Redirects are followed, and an unavailable proxy, a lost connection or a timeout is retried with backoff
/// (against another proxy when one stops answering) until `retryFor` runs out.
///
/// Delivery is at least once: a write retried after a timeout or a failover may be stored twice (its first
/// attempt may have become durable without its answer arriving). Txids (or payload ids) let readers tell.
public final class ProxyClient: Sendable {
    public struct Options: Sendable {
        public var requestTimeout: Duration = .seconds(10)
        /// How long one call keeps retrying.
        public var retryFor: Duration = .seconds(30)
        public var redirectsMax = 5
        public var backoffFirst: Duration = .milliseconds(20)
        public var backoffMax: Duration = .seconds(1)
        /// A proxy that did not answer is avoided for this long when choosing one.
        public var avoidFor: Duration = .seconds(5)
        /// TLS to the proxies (their certificates must name the host of each address); nil: plaintext.
        public var tls: TLSIdentity?
        /// Hears what a call waits for (the last problem) and how much longer it tries, each time it backs off
        /// before trying again, so a tool can say why it has no answer yet.
        public var onWait: (@Sendable (_ problem: String, _ left: Duration) -> Void)?
        public init() {}
    }

    public let options: Options
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let discovery: (any MetadataStore)?

    private struct State {
        var proxies: [String]
        var discovered = ContinuousClock.now
        var owners: [String: String] = [:]
        var connections: [String: FrameConnection] = [:]
        /// Connections being made: callers that need one meanwhile wait for it instead of making their own.
        var connecting: [String: Task<FrameConnection, any Error>] = [:]
        var avoided: [String: ContinuousClock.Instant] = [:]
        var shutDown = false
    }
    private let state: Mutex<State>

    /// A client of the proxies at `proxies` (host:port each).
    public init(proxies: [String], options: Options = Options()) {
        precondition(!proxies.isEmpty, "a proxy client needs at least one proxy address")
        self.options = options
        discovery = nil
        state = Mutex(State(proxies: proxies.sorted()))
    }

    /// Proxy addresses from a command line: `HOST:PORT[,HOST:PORT…]`. Throws naming the bad one.
    public static func addresses(parsing list: String) throws -> [String] {
        let addresses = list.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        for address in addresses {
            guard let colon = address.lastIndex(of: ":"), colon != address.startIndex,
                  let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
                throw ProxyFailure(.badRequest, "proxy address '\(address)' is not HOST:PORT (several are separated by commas)")
            }
        }
        return addresses
    }

    /// A client that finds the proxies in the metadata store's registry (and again when none answers).
    public init(metadata: any MetadataStore, options: Options = Options()) {
        self.options = options
        discovery = metadata
        state = Mutex(State(proxies: []))
    }

    public func shutdown() async {
        let connections = state.withLock { s -> [FrameConnection] in
            s.shutDown = true
            defer { s.connections.removeAll() }
            return Array(s.connections.values)
        }
        for connection in connections { await connection.close() }
        try? await group.shutdownGracefully()
    }

    // MARK: Operations

    /// Writes one record; `txid` nil lets the owning proxy assign one. Returns its DLSN once durable.
    public func write(_ stream: String, _ payload: [UInt8], txid: Int64? = nil) async throws -> DLSN {
        guard case .written(let dlsn) = try await call(.write(stream: stream, ProxyRecord(txid: txid, payload: payload))) else {
            throw ProxyFailure(.internalError, "unexpected answer to a write")
        }
        return dlsn
    }

    /// Like `write`, calling `completion` once instead of suspending. While the stream's owner is known and its
    /// connection is up, the request goes straight out and `completion` runs on the connection's event loop when
    /// the answer arrives: no task and no hop between threads, so a caller that keeps many writes going chains
    /// the next write from there (as `dlog-bench log` does). A redirect, an unavailable proxy, a lost
    /// connection or a timeout sends the write down `write`'s path, with its retries, from a task.
    public func write(_ stream: String, _ payload: [UInt8], txid: Int64? = nil,
                      completion: @escaping @Sendable (Result<DLSN, any Error>) -> Void) {
        let request = ProxyRequest.write(stream: stream, ProxyRecord(txid: txid, payload: payload))
        guard let (owner, connection) = ownerConnection(for: stream) else { return retrying(request, completion) }
        connection.send(timeout: options.requestTimeout, patience: .now + options.retryFor) { id, buffer in
            request.encode(requestID: id, into: &buffer)
        } reply: { [self] answer in
            switch answer.map({ ProxyReply.decode($0, op: .write) }) {
            case .success(.success(.written(let dlsn))):
                completion(.success(dlsn))
            case .success(.failure(let failure)) where failure.status != .redirect && failure.status != .unavailable:
                completion(.failure(failure))
            case .success(.success):
                completion(.failure(ProxyFailure(.internalError, "unexpected answer to a write")))
            case .success(.failure(let failure)):
                // The retry starts from what this answer taught, not from the owner that just sent it away.
                learn(failure, stream: stream, from: owner)
                retrying(request, completion)
            case .failure(let error):
                // As `attempt` does: a connection that closed or went silent is not tried again.
                if !keeps(connection, after: error) { drop(connection, at: owner) }
                retrying(request, completion)
            }
        }
    }

    /// `write`'s path for a callback write the direct path could not finish.
    private func retrying(_ request: ProxyRequest,
                          _ completion: @escaping @Sendable (Result<DLSN, any Error>) -> Void) {
        Task {
            do {
                guard case .written(let dlsn) = try await call(request) else {
                    throw ProxyFailure(.internalError, "unexpected answer to a write")
                }
                completion(.success(dlsn))
            } catch {
                completion(.failure(error))
            }
        }
    }

    /// The known owner of `stream` and the live connection to it, if there is one.
    private func ownerConnection(for stream: String) -> (String, FrameConnection)? {
        state.withLock { s in
            guard !s.shutDown, let owner = s.owners[stream], let connection = s.connections[owner],
                  connection.isActive else { return nil }
            return (owner, connection)
        }
    }

    /// Writes records in order as one step; returns their DLSNs. At most 10,000 records and 16 MiB of
    /// payload per call (a proxy's frame limit): split larger batches.
    public func writeBulk(_ stream: String, _ records: [ProxyRecord]) async throws -> [DLSN] {
        if records.isEmpty { return [] }
        guard records.count <= ProxyRequest.bulkRecordsMax else {
            throw ProxyFailure(.tooLarge, "a bulk write carries at most \(ProxyRequest.bulkRecordsMax) records, not \(records.count); split it")
        }
        let bytes = records.reduce(0) { $0 + $1.payload.count + 12 }
        guard bytes <= Self.requestBytesMax else {
            throw ProxyFailure(.tooLarge, "a bulk write of \(bytes) bytes is over the limit of \(Self.requestBytesMax); split it")
        }
        guard case .writtenBulk(let dlsns) = try await call(.writeBulk(stream: stream, records)), dlsns.count == records.count else {
            throw ProxyFailure(.internalError, "unexpected answer to a bulk write")
        }
        return dlsns
    }

    /// Payload bytes of one request, at most (below the proxy's frame limit).
    public static let requestBytesMax = 16 << 20

    public func truncate(_ stream: String, before dlsn: DLSN) async throws { _ = try await call(.truncate(stream: stream, before: dlsn)) }
    public func create(_ stream: String) async throws { _ = try await call(.create(stream: stream)) }
    public func delete(_ stream: String) async throws { _ = try await call(.delete(stream: stream)) }
    /// Asks the owning proxy to let the stream go (another proxy may then take it).
    public func release(_ stream: String) async throws { _ = try await call(.release(stream: stream)) }

    /// The address of the proxy that owns `stream`, or nil.
    public func owner(of stream: String) async throws -> String? {
        guard case .owner(let address) = try await call(.getOwner(stream: stream)) else { return nil }
        return address
    }

    /// Makes sure a proxy owns `stream` (taking it when none does); returns that proxy's address.
    @discardableResult
    public func heartbeat(_ stream: String) async throws -> String? {
        guard case .owner(let address) = try await call(.heartbeat(stream: stream)) else { return nil }
        return address
    }

    // MARK: Routing and retries

    func call(_ request: ProxyRequest) async throws -> ProxyReply {
        let stream = request.stream
        let deadline = ContinuousClock.now + options.retryFor
        var redirects = 0
        var backoff = options.backoffFirst
        var lastProblem = "no proxy was tried"
        while true {
            if state.withLock({ $0.shutDown }) { throw ProxyFailure(.unavailable, "the proxy client is shut down") }
            let address: String?
            do {
                address = try await target(for: stream)
            } catch {
                address = nil
                lastProblem = "looking up the proxies: \(error)"
            }
            if let address {
                switch await attempt(request, at: address, patience: deadline) {
                case .success(let reply):
                    if case .owner(let owner?) = reply { state.withLock { $0.owners[stream] = owner } }
                    else if request.op != .create && request.op != .delete && request.op != .getOwner && request.op != .release {
                        state.withLock { $0.owners[stream] = address }
                    }
                    return reply
                case .failure(let failure) where failure.status == .redirect && isAvoided(failure.message):
                    // Redirected to a proxy that just failed us: it holds the stream until its lease runs out
                    // (it died, or is cut off). Wait, then ask again: a live proxy takes it over then.
                    lastProblem = "the owner \(failure.message) does not answer; waiting for its ownership to expire"
                case .failure(let failure) where failure.status == .redirect:
                    learn(failure, stream: stream, from: address)
                    redirects += 1
                    // Redirects back and forth mean ownership is moving: wait a little before following more.
                    if redirects <= options.redirectsMax { continue }
                    redirects = 0
                    lastProblem = "redirected \(options.redirectsMax) times (last to \(failure.message)); ownership is moving"
                case .failure(let failure) where failure.status == .unavailable:
                    lastProblem = "\(address): \(failure.message)"
                    learn(failure, stream: stream, from: address)
                case .failure(let failure):
                    throw failure
                }
            } else {
                lastProblem = "no proxy is registered"
            }
            guard ContinuousClock.now + backoff < deadline else {
                throw ProxyFailure(.unavailable, "stream '\(stream)': no proxy took the request within \(options.retryFor) (last: \(lastProblem))")
            }
            options.onWait?("stream '\(stream)': \(lastProblem)", deadline - .now)
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, options.backoffMax)
        }
    }

    /// One try at `address`: a connection failure or timeout comes back as `unavailable`, and the proxy is
    /// avoided for a while. A request on a connection that keeps answering others waits up to `patience`.
    private func attempt(_ request: ProxyRequest, at address: String,
                         patience: ContinuousClock.Instant) async -> Result<ProxyReply, ProxyFailure> {
        let connection: FrameConnection
        do {
            connection = try await self.connection(to: address)
        } catch {
            state.withLock { $0.avoided[address] = .now + options.avoidFor }
            return .failure(ProxyFailure(.unavailable, ConnectionErrorText.reason(error)))
        }
        do {
            let frame = try await connection.send(timeout: options.requestTimeout, patience: patience) { id, buffer in
                request.encode(requestID: id, into: &buffer)
            }
            return ProxyReply.decode(frame, op: request.op)
        } catch {
            if keeps(connection, after: error) { return .failure(ProxyFailure(.unavailable, "\(address): \(error)")) }
            drop(connection, at: address)
            return .failure(ProxyFailure(.unavailable, "\(error)"))
        }
    }

    /// What a `REDIRECT` or an `UNAVAILABLE` from `address` says about `stream`: the owner it names, or (a proxy
    /// draining, or losing the stream) that `address` is to be avoided for a while and the owner asked again
    /// (a proxy that does not own the stream redirects to whoever does).
    private func learn(_ failure: ProxyFailure, stream: String, from address: String) {
        state.withLock { s in
            switch failure.status {
            case .redirect:
                // Bounded: a client writing to very many streams forgets owners now and then.
                if s.owners.count >= 100_000 { s.owners.removeAll() }
                s.owners[stream] = failure.message
            case .unavailable:
                s.owners[stream] = nil
                s.avoided[address] = .now + options.avoidFor
            default:
                break
            }
        }
    }

    /// Whether a connection stays after a request on it failed with `error`. A request that waited out its
    /// patience on a connection that still answers others waited behind slow work at the proxy: the connection
    /// stays, with every other request on it. One that closed, or went silent past the timeout, does not.
    private func keeps(_ connection: FrameConnection, after error: any Error) -> Bool {
        error is ConnectionTimedOut && connection.isActive && !connection.isSilent(for: options.requestTimeout)
    }

    /// Closes and forgets `connection` (if it is still the one to `address`), and avoids the proxy for a while.
    private func drop(_ connection: FrameConnection, at address: String) {
        let dropped = state.withLock { s -> FrameConnection? in
            s.avoided[address] = .now + options.avoidFor
            guard s.connections[address] === connection else { return nil }
            return s.connections.removeValue(forKey: address)
        }
        if let dropped { Task { await dropped.close() } }
    }

    /// Where to send a request for `stream`: its known owner, else the proxy rendezvous hashing picks among
    /// those not avoided (all of them if every one is).
    private func target(for stream: String) async throws -> String? {
        if let owner = state.withLock({ $0.owners[stream] }) { return owner }
        // With discovery: list the proxies when none is known, when every known one fails, and every 30 s
        // (to start using proxies added since).
        if let discovery, state.withLock({ $0.proxies.isEmpty || ContinuousClock.now - $0.discovered > .seconds(30) }) || shouldRediscover() {
            let registered = try await discovery.list(prefix: "/proxies/").items.map { String(decoding: $0.value, as: UTF8.self) }
            state.withLock { s in
                s.proxies = registered.sorted()
                s.discovered = .now
            }
        }
        return state.withLock { s -> String? in
            let now = ContinuousClock.now
            let usable = s.proxies.filter { (s.avoided[$0] ?? now) <= now }
            let candidates = usable.isEmpty ? s.proxies : usable
            return candidates.max { Self.weight(stream, $0) < Self.weight(stream, $1) }
        }
    }

    private func isAvoided(_ address: String) -> Bool {
        state.withLock { s in (s.avoided[address] ?? .now) > .now }
    }

    /// With discovery: look again when every known proxy is being avoided.
    private func shouldRediscover() -> Bool {
        state.withLock { s in
            let now = ContinuousClock.now
            return s.proxies.allSatisfy { (s.avoided[$0] ?? now) > now }
        }
    }

    /// FNV-1a over stream and proxy: the highest weight wins, so adding or losing a proxy moves only its streams.
    static func weight(_ stream: String, _ proxy: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in stream.utf8 + [0] + proxy.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    /// The connection to `address`, made once however many callers need it at a time: thousands of requests in
    /// flight when a connection dropped used to connect again each on its own, and the storm of connects timed out.
    private func connection(to address: String) async throws -> FrameConnection {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw ProxyFailure(.badRequest, "'\(address)' is not host:port")
        }
        let host = String(address[..<colon])
        let (live, pending) = state.withLock { s -> (FrameConnection?, Task<FrameConnection, any Error>?) in
            if let live = s.connections[address], live.isActive { return (live, nil) }
            if let pending = s.connecting[address] { return (nil, pending) }
            let task = Task { [group, options] in
                try await FrameConnection.connect(host: host, port: port, group: group,
                                                  timeout: min(options.requestTimeout, .seconds(5)), tls: options.tls)
            }
            s.connecting[address] = task
            return (nil, task)
        }
        if let live { return live }
        let result = await pending!.result
        let orphan = state.withLock { s -> FrameConnection? in
            guard s.connecting[address] == pending else { return nil }
            s.connecting[address] = nil
            guard case .success(let made) = result else { return nil }
            if s.shutDown { return made }
            s.connections[address] = made
            return nil
        }
        if let orphan {
            await orphan.close()
            throw ProxyFailure(.unavailable, "the proxy client is shut down")
        }
        return try result.get()
    }
}
