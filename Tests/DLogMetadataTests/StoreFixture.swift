import DLogMetadata
import DLogTestSupport
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

/// The backends the contract suite runs against: the metadata role's server (in this process, over real
/// TCP on loopback, on a real SQLite file) and a real etcd server started for the test.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case embedded
    case etcd
    var testDescription: String { rawValue }
}

/// A running store of one backend, with clients connected to it, that a test can restart underneath them.
final class StoreFixture: Sendable {
    let backend: Backend
    let directory = TempDir("dlog-meta")
    private let embedded = Mutex<(store: EmbeddedStore, server: MetadataServer)?>(nil)
    private let portBox = Mutex(0)
    /// The embedded server's port (stable across restarts).
    var port: Int { portBox.withLock { $0 } }
    private let etcd: EtcdServer?
    private let clients = Mutex<[any MetadataStore]>([])
    let historyRevisions: Int64

    private init(backend: Backend, historyRevisions: Int64, etcd: EtcdServer?) {
        self.backend = backend
        self.historyRevisions = historyRevisions
        self.etcd = etcd
    }

    static func start(_ backend: Backend, historyRevisions: Int64 = 100_000) async throws -> StoreFixture {
        switch backend {
        case .embedded:
            let fixture = StoreFixture(backend: backend, historyRevisions: historyRevisions, etcd: nil)
            try fixture.startEmbedded()
            return fixture
        case .etcd:
            return StoreFixture(backend: backend, historyRevisions: historyRevisions, etcd: try await EtcdServer.start())
        }
    }

    /// Starts the embedded server: on a port below the kernel's ephemeral range the first time (a port the
    /// kernel picks is in that range, and once a restart frees it any outgoing connection on the machine may
    /// take it, which failed a restart with EADDRINUSE), then on that same port.
    private func startEmbedded() throws {
        var configuration = EmbeddedStore.Configuration(directory: directory.sub("data"))
        configuration.historyRevisions = historyRevisions
        let store = try Self.open(configuration)
        let fixed = portBox.withLock { $0 }
        var lastError: (any Error)?
        for attempt in 0..<50 {
            let port = fixed != 0 ? fixed : Int.random(in: 20_000..<32_000)
            do {
                let server = try MetadataServer(store: store, host: "127.0.0.1", port: port, logger: Logger(label: "test-metadata"))
                portBox.withLock { $0 = port }
                embedded.withLock { $0 = (store, server) }
                return
            } catch {
                lastError = error
                // Another test's port: try another one. Our own port after a restart: wait for it to be free.
                if fixed != 0 { Thread.sleep(forTimeInterval: 0.1 * Double(min(attempt + 1, 5))) }
            }
        }
        Task { await store.shutdown() }
        throw lastError!
    }

    /// The store, reopened after a restart. The old one's lock on the directory is released when its file is
    /// closed everywhere: a child another test spawned at that moment holds a copy until it runs its program
    /// (the lock file is close-on-exec), which on a loaded machine can take a while. So "in use" is retried.
    private static func open(_ configuration: EmbeddedStore.Configuration) throws -> EmbeddedStore {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            do {
                return try EmbeddedStore(configuration)
            } catch let error as MetadataError where "\(error)".contains("is in use by another metadata store")
                && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
    }

    /// A new client of the store; closed with the fixture.
    func client() throws -> any MetadataStore {
        let client: any MetadataStore
        switch backend {
        case .embedded:
            client = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: portBox.withLock { $0 })],
                                 requestTimeout: .seconds(5))
        case .etcd:
            client = try etcd!.store(prefix: "/contract")
        }
        clients.withLock { $0.append(client) }
        return client
    }

    /// The server side stops hard and comes back with the same data on the same port.
    func restart() async throws {
        switch backend {
        case .embedded:
            let old = embedded.withLock { current in defer { current = nil }; return current }
            old?.server.close()
            await old?.store.shutdown()
            try startEmbedded()
        case .etcd:
            try await etcd!.restart()
        }
    }

    /// The embedded store itself (nil for etcd), for reading its counters.
    var embeddedStore: EmbeddedStore? { embedded.withLock { $0?.store } }

    func close() async {
        for client in clients.withLock({ $0 }) { await client.shutdown() }
        let old = embedded.withLock { current in defer { current = nil }; return current }
        old?.server.close()
        await old?.store.shutdown()
        etcd?.stop()
    }
}

/// Runs `body` with a started fixture and always closes it.
func withStore(_ backend: Backend, historyRevisions: Int64 = 100_000,
               _ body: (StoreFixture, any MetadataStore) async throws -> Void) async throws {
    let fixture = try await StoreFixture.start(backend, historyRevisions: historyRevisions)
    do {
        try await body(fixture, try fixture.client())
    } catch {
        await fixture.close()
        throw error
    }
    await fixture.close()
}

/// Reads a watch in the background so a test can act in between and then wait for what it expects.
final class EventCollector: Sendable {
    private final class State: Sendable {
        let events = Mutex<[WatchEvent]>([])
        let failure = Mutex<(any Error)?>(nil)
    }
    private let state = State()
    private let task: Task<Void, Never>

    init(_ watch: MetadataWatch) {
        let state = self.state
        task = Task {
            do {
                for try await event in watch { state.events.withLock { $0.append(event) } }
            } catch {
                state.failure.withLock { $0 = error }
            }
        }
    }

    var received: [WatchEvent] { state.events.withLock { $0 } }
    var error: (any Error)? { state.failure.withLock { $0 } }

    /// Waits until at least `count` events arrived (or the watch failed); throws on timeout.
    @discardableResult
    func wait(for count: Int, seconds: Double = 15) async throws -> [WatchEvent] {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let error { throw error }
            let now = received
            if now.count >= count { return now }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TimedOut(what: "waiting for \(count) watch events (have \(received.count))", seconds: seconds)
    }

    func stop() { task.cancel() }
    deinit { task.cancel() }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Expects `body` to throw exactly `expected`.
func expectError(_ expected: MetadataError, sourceLocation: SourceLocation = #_sourceLocation,
                 _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected \(expected), but it succeeded", sourceLocation: sourceLocation)
    } catch let error as MetadataError {
        #expect(error == expected, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(expected), got \(error)", sourceLocation: sourceLocation)
    }
}

/// A counter tasks can share.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func add() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}
