import DLogBookie
import DLogIO
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Logging
import Synchronization
import Glibc

/// Real bookies (journal, storage, TCP server on loopback) and a real embedded metadata store, all in this
/// process, with each bookie registered in metadata under its address. For the tests of the ledger client and
/// of the layers above it.
public final class LedgerFixture: Sendable {
    public let directory = TempDir("dlog-ledger")
    public let store: EmbeddedStore
    public let cluster: Cluster
    public let bookies: [(bookie: Bookie, server: BookieServer)]
    public let pool: BookiePool
    public let allocator: LedgerIDAllocator
    /// Fatal journal failures reported by the bookies (a test may check there are none).
    public let journalFailures = JournalFailures()
    /// Bookies already stopped: stopping one twice would wait on event loops that are gone.
    private let stopped = Mutex<Set<Int>>([])

    /// `checkpointInterval`: how often the bookies move their write caches to disk (their default when nil).
    /// `configure` may change bookie N's configuration before it starts (a test's slow journal, say).
    public init(bookies count: Int, checkpointInterval: Duration? = nil,
                configure: (Int, inout Bookie.Configuration) -> Void = { _, _ in }) async throws {
        store = try EmbeddedStore(.init(directory: directory.sub("metadata")))
        cluster = Cluster(store: store)
        try await cluster.initialize()
        var started: [(Bookie, BookieServer)] = []
        let lease = try await store.grantLease(ttlSeconds: 600)
        for index in 0..<count {
            let dir = directory.sub("bookie\(index)")
            var config = Bookie.Configuration(
                journal: .init(directory: dir + "/journal", fileBytes: 2 << 20, filesMax: 4, engine: .blocking),
                journalDirectories: [dir + "/journal"], storage: .init(ledgerDirectories: [dir + "/ledgers"]))
            if let checkpointInterval { config.checkpointInterval = checkpointInterval }
            configure(index, &config)
            let bookie = try Bookie(configuration: config, logger: Logger(label: "test-bookie"))
            let failures = journalFailures
            try bookie.start { failure in failures.record("bookie-\(index): \(failure)") }
            let server = try BookieServer(bookie: bookie, host: "127.0.0.1", port: 0, maxFrameBytes: 1 << 20,
                                          logger: Logger(label: "test-bookie"))
            let address = "127.0.0.1:\(server.localAddress!.port!)"
            try await cluster.register(BookieRegistration(id: BookieID("bookie-\(index)"), address: address,
                                                          rack: "/rack-\(index % 3)", readOnly: false, disks: [],
                                                          startedAt: 0), lease: lease.id, waitMax: .seconds(1))
            started.append((bookie, server))
        }
        bookies = started
        pool = BookiePool(cluster: cluster)
        allocator = LedgerIDAllocator(cluster: cluster)
    }

    /// Stops the bookie registered as `id` hard (its server closes; it stays registered, as a crashed one
    /// would until its lease expired).
    public func kill(_ id: BookieID) {
        guard let index = Int(id.rawValue.dropFirst("bookie-".count)),
              stopped.withLock({ $0.insert(index).inserted }) else { return }
        bookies[index].server.close()
        bookies[index].bookie.stop()
    }

    public func stop() async {
        await pool.shutdown()
        for (index, (bookie, server)) in bookies.enumerated() where stopped.withLock({ $0.insert(index).inserted }) {
            server.close()
            bookie.stop()
        }
        await store.shutdown()
    }
}

/// Runs `body` with a fixture of `count` bookies and always stops it.
public func withLedgerCluster(bookies count: Int, checkpointInterval: Duration? = nil,
                              configure: (Int, inout Bookie.Configuration) -> Void = { _, _ in },
                              _ body: (LedgerFixture) async throws -> Void) async throws {
    let fixture = try await LedgerFixture(bookies: count, checkpointInterval: checkpointInterval, configure: configure)
    do {
        try await body(fixture)
    } catch {
        await fixture.stop()
        throw error
    }
    await fixture.stop()
}

/// A bookie that hangs: a listening socket that never accepts, so connections open (the kernel completes them)
/// and requests are sent, but nothing is ever answered, as with a stopped process or a stuck disk. Closing
/// it resets those connections.
public final class HungBookie: Sendable {
    public let id: BookieID
    public let port: Int
    private let socket: Int32

    /// Listens on a free loopback port and registers as `id` in the fixture's metadata.
    public init(_ id: String, in fixture: LedgerFixture) async throws {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket: errno \(errno)")
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                Glibc.bind(fd, raw, length) == 0 && Glibc.listen(fd, 64) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        precondition(bound, "bind/listen: errno \(errno)")
        self.id = BookieID(id)
        socket = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let lease = try await fixture.store.grantLease(ttlSeconds: 600)
        try await fixture.cluster.register(BookieRegistration(id: self.id, address: "127.0.0.1:\(port)", rack: "/rack-hung",
                                                              readOnly: false, disks: [], startedAt: 0),
                                           lease: lease.id, waitMax: .seconds(1))
    }

    public func close() { Glibc.close(socket) }
}

/// Journal failures gathered from the bookies' threads.
public final class JournalFailures: Sendable {
    private let list = Mutex<[String]>([])
    public var all: [String] { list.withLock { $0 } }
    func record(_ failure: String) { list.withLock { $0.append(failure) } }
}
