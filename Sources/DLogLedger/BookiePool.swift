import CoreMetrics
import DLogMetadata
import DLogWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The client's connections to bookies, shared by every ledger it writes or reads: `connectionsPerBookie`
/// pipelined connections to each (a ledger always uses the same one, so its requests to a bookie stay in order).
/// Addresses come from the bookies' registrations in metadata. A connection that closed is replaced on next
/// use; a bookie that cannot be connected to is retried only after a backoff that doubles per failure, and is
/// refused at once meanwhile, so a dead bookie costs callers nothing but a clear error.
public final class BookiePool: Sendable {
    public struct Options: Sendable {
        /// Pipelined connections kept to each bookie (1...64).
        public var connectionsPerBookie = 1
        public var connectTimeout: Duration = .seconds(5)
        /// A connection with a request unanswered this long is dropped, failing its requests (see `BookieClient`):
        /// writers then replace the bookie, readers go to another replica.
        public var requestTimeout: Duration = .seconds(5)
        /// Wait after the first failed connection attempt to a bookie; doubles per failure up to `reconnectBackoffMax`.
        public var reconnectBackoff: Duration = .milliseconds(100)
        public var reconnectBackoffMax: Duration = .seconds(5)
        public var eventLoopThreads = 2
        /// Event loops to connect on instead of `eventLoopThreads` of its own; the caller stops them.
        public var eventLoopGroup: MultiThreadedEventLoopGroup?
        /// How long a writer that told a new LAC only to the bookie a tailing reader polls first waits before
        /// telling the others too, unless an add carried it to them meanwhile (see `LACTargets`, `LACDebts`).
        /// Readers poll the others after `LedgerReader.Options.longPollSpreadDelay`, 20 ms as well.
        public var lacSettleDelay: Duration = .milliseconds(20)
        /// TLS to the bookies (each bookie's certificate must name the host it registered); nil: plaintext.
        public var tls: TLSIdentity?
        /// Where the pool's ledgers record add and read latency (`LedgerMeters`); nil: `MetricsSystem`'s factory.
        public var metrics: (any MetricsFactory)? = nil
        public init() {}
    }

    public let cluster: Cluster
    public let options: Options
    /// Client-side latency of the ledgers opened through this pool, for metrics.
    public let meters: LedgerMeters
    /// Where skipped replicas and similar client-side trouble are reported.
    public let logger: Logger
    let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool
    /// Writers owing a LAC to the bookies their last explicit write skipped (see `LACDebts`).
    let lacDebts: LACDebts

    private struct Peer {
        var address: String?
        var connections: [BookieClient?]
        var backoff: ReconnectBackoff
    }
    private struct State {
        var peers: [BookieID: Peer] = [:]
        var shutDown = false
    }
    private let state = Mutex(State())
    private let notes = Mutex(LogThrottle())

    public init(cluster: Cluster, options: Options = Options(), logger: Logger = Logger(label: "dlog.ledger")) {
        precondition((1...64).contains(options.connectionsPerBookie), "connectionsPerBookie must be 1...64")
        self.cluster = cluster
        self.options = options
        self.logger = logger
        meters = LedgerMeters(factory: options.metrics ?? MetricsSystem.factory)
        group = options.eventLoopGroup ?? MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.eventLoopThreads))
        ownsGroup = options.eventLoopGroup == nil
        lacDebts = LACDebts(group: group, delay: TimeAmount(options.lacSettleDelay))
    }

    private func newPeer() -> Peer {
        Peer(connections: Array(repeating: nil, count: options.connectionsPerBookie),
             backoff: ReconnectBackoff(first: options.reconnectBackoff, max: options.reconnectBackoffMax))
    }

    /// Whether a note that many ledgers make at once (about one bookie) is logged now, and how many repeats were
    /// folded into it since it last was; nil: folded into the next one (see `LogThrottle`).
    func admitNote(_ key: String) -> Int? { notes.withLock { $0.admit(key, now: .now) } }

    /// The registered (live) bookies, for placement.
    public func registered() async throws -> [BookieRegistration] {
        let bookies = try await cluster.bookies()
        state.withLock { s in
            for b in bookies { s.peers[b.id, default: newPeer()].address = b.address }
        }
        return bookies
    }

    /// The connection to `bookie` for `lane` (a ledger id: the same lane always gets the same connection).
    public func client(for bookie: BookieID, lane: UInt64 = 0) async throws -> BookieClient {
        let slot = slot(lane)
        let (live, known, refusal) = state.withLock { s -> (BookieClient?, String?, String?) in
            if s.shutDown { return (nil, nil, "the client is shut down") }
            let peer = s.peers[bookie, default: newPeer()]
            s.peers[bookie] = peer
            if let c = peer.connections[slot], c.channel.isActive { return (c, nil, nil) }
            return (nil, peer.address, peer.backoff.refusal(at: .now))
        }
        if let live { return live }
        if let refusal { throw LedgerError.unreachable(bookie, refusal) }
        var address = known
        if address == nil { address = try await registeredAddress(of: bookie) }
        var attempt = await connect(bookie, at: address)
        if case .failure = attempt, let moved = try? await registeredAddress(of: bookie), moved != address {
            // The bookie came back elsewhere (restarted on another port or host): try its new address at once;
            // the backoff is for an address that keeps failing.
            attempt = await connect(bookie, at: moved)
        }
        let made: BookieClient
        switch attempt {
        case .success(let client):
            made = client
        case .failure(let why):
            state.withLock { $0.peers[bookie]?.backoff.failed(why.reason, at: .now) }
            throw LedgerError.unreachable(bookie, why.reason)
        }
        let (kept, extra) = state.withLock { s -> (BookieClient, BookieClient?) in
            s.peers[bookie]?.backoff.succeeded()
            if s.shutDown { return (made, made) }
            if let other = s.peers[bookie]?.connections[slot], other.channel.isActive { return (other, made) }
            s.peers[bookie]?.connections[slot] = made
            return (made, nil)
        }
        if let extra { await extra.close() }
        return kept
    }

    private func slot(_ lane: UInt64) -> Int { Int(lane % UInt64(options.connectionsPerBookie)) }

    /// The open connection to `bookie` for `lane`, without waiting: nil when there is none yet (or it closed),
    /// and `client(for:lane:)` must make one.
    private func connectedClient(for bookie: BookieID, lane: UInt64) -> BookieClient? {
        let slot = slot(lane)
        return state.withLock { s in
            guard !s.shutDown, let c = s.peers[bookie]?.connections[slot], c.channel.isActive, !c.isClosed else { return nil }
            return c
        }
    }

    /// An event loop for a short timer, nil once the pool is shut down (its loops may be gone).
    func timerLoop() -> EventLoop? {
        state.withLock { $0.shutDown } ? nil : group.next()
    }

    /// The event loop of the connection to `bookie` when it is open (work for that connection runs there
    /// without a hop between threads), else any loop for a timer; nil once the pool is shut down.
    func loop(toward bookie: BookieID, lane: UInt64) -> EventLoop? {
        connectedClient(for: bookie, lane: lane)?.channel.eventLoop ?? timerLoop()
    }

    /// The address `bookie` registered, read from metadata now (nil when it is not registered).
    private func registeredAddress(of bookie: BookieID) async throws -> String? {
        try await registered().first { $0.id == bookie }?.address
    }

    private struct ConnectFailure: Error {
        var reason: String
    }

    private func connect(_ bookie: BookieID, at address: String?) async -> Result<BookieClient, ConnectFailure> {
        guard let address, let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            return .failure(ConnectFailure(reason: "it is not registered in metadata (stopped or dead)"))
        }
        do {
            return .success(try await BookieClient.connect(host: String(address[..<colon]), port: port, group: group,
                                                           connectTimeout: options.connectTimeout,
                                                           requestTimeout: options.requestTimeout, tls: options.tls))
        } catch {
            return .failure(ConnectFailure(reason: "connecting to \(address): \(error)"))
        }
    }

    /// Sends `request` to `bookie` and waits at most `timeout` for the answer: a bookie that hangs (stopped,
    /// partitioned) costs the caller that long, never more.
    public func send(_ request: BookieRequest, to bookie: BookieID, lane: UInt64 = 0,
                     timeout: Duration) async throws -> BookieResponse {
        let client = try await client(for: bookie, lane: lane)
        guard !client.isClosed else { throw LedgerError.unreachable(bookie, "the client is shut down") }
        return try await client.sendFuture(request, answerWithin: timeout, naming: bookie).get()
    }

    /// `send(_:to:lane:timeout:)` for a caller that wants no task per request: over an open connection the
    /// answer comes to `completion` on its event loop; only a bookie not connected yet costs a task.
    func send(_ request: BookieRequest, to bookie: BookieID, lane: UInt64 = 0, timeout: Duration,
              then completion: @escaping @Sendable (Result<BookieResponse, any Error>) -> Void) {
        if let client = connectedClient(for: bookie, lane: lane) {
            client.send(request, answerWithin: timeout, naming: bookie, then: completion)
            return
        }
        Task {
            do {
                completion(.success(try await send(request, to: bookie, lane: lane, timeout: timeout)))
            } catch {
                completion(.failure(error))
            }
        }
    }

    public func shutdown() async {
        let clients = state.withLock { s -> [BookieClient] in
            s.shutDown = true
            defer { s.peers.removeAll() }
            return s.peers.values.flatMap { $0.connections.compactMap { $0 } }
        }
        for client in clients { await client.close() }
        if ownsGroup { try? await group.shutdownGracefully() }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
