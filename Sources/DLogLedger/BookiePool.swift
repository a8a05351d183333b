import DLogMetadata
import DLogWire
import NIOCore
import NIOPosix
import Synchronization

/// One pipelined connection per bookie, shared by every ledger of a client. Addresses come from the bookies'
/// registrations in metadata; a connection that closed is replaced on next use.
public final class BookiePool: Sendable {
    public let cluster: Cluster
    let group: MultiThreadedEventLoopGroup
    private struct State {
        var clients: [BookieID: BookieClient] = [:]
        var addresses: [BookieID: String] = [:]
        var shutDown = false
    }
    private let state = Mutex(State())

    public init(cluster: Cluster, threads: Int = 2) {
        self.cluster = cluster
        group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    }

    /// The registered (live) bookies, for placement.
    public func registered() async throws -> [BookieRegistration] {
        let bookies = try await cluster.bookies()
        state.withLock { s in for b in bookies { s.addresses[b.id] = b.address } }
        return bookies
    }

    public func client(for bookie: BookieID) async throws -> BookieClient {
        if let live = state.withLock({ $0.clients[bookie] }), live.channel.isActive { return live }
        var address = state.withLock { $0.addresses[bookie] }
        if address == nil {
            _ = try await registered()
            address = state.withLock { $0.addresses[bookie] }
        }
        guard let address, let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw LedgerError.unreachable(bookie, "it is not registered in metadata (stopped or dead)")
        }
        let made: BookieClient
        do {
            made = try await BookieClient.connect(host: String(address[..<colon]), port: port, group: group)
        } catch {
            throw LedgerError.unreachable(bookie, "connecting to \(address): \(error)")
        }
        let (kept, extra) = state.withLock { s -> (BookieClient, BookieClient?) in
            if let other = s.clients[bookie], other.channel.isActive { return (other, made) }
            s.clients[bookie] = made
            return (made, nil)
        }
        if let extra { await extra.close() }
        return kept
    }

    /// Sends `request` to `bookie` and waits at most `timeout` for the answer: a bookie that hangs (stopped,
    /// partitioned) costs the caller that long, never more.
    public func send(_ request: BookieRequest, to bookie: BookieID, timeout: Duration) async throws -> BookieResponse {
        let client = try await client(for: bookie)
        let answer = client.channel.eventLoop.makePromise(of: BookieResponse.self)
        client.sendFuture(request).cascade(to: answer)
        let (seconds, attoseconds) = timeout.components
        let timer = client.channel.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
            answer.fail(LedgerError.unreachable(bookie, "no answer within \(timeout)"))
        }
        defer { timer.cancel() }
        return try await answer.futureResult.get()
    }

    public func shutdown() async {
        let clients = state.withLock { s -> [BookieClient] in
            s.shutDown = true
            defer { s.clients.removeAll() }
            return Array(s.clients.values)
        }
        for client in clients { await client.close() }
        try? await group.shutdownGracefully()
    }
}
