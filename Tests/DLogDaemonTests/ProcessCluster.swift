import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation

/// A cluster of real processes on loopback: a metadata role (initialized with `dlogctl cluster init`) and
/// bookies registered in it, each with its own data directories. Tests talk to it through the ledger client in
/// this process, or through dlog-bench. Used by one test at a time (not shared across tasks).
final class ProcessCluster {
    let dir = TempDir("dlog-procs")
    /// The metadata role's process; nil when the cluster uses another store (etcd).
    private(set) var metadataProcess: DaemonProcess?
    var metadata: DaemonProcess { metadataProcess! }
    let uri: String
    let metadataPort: Int
    private(set) var bookies: [DaemonProcess] = []
    private let bookieSettings: String
    /// Per bookie index: config lines that replace `bookieSettings`, and environment variables (`addBookie`).
    private var ownSettings: [Int: String] = [:]
    private var ownEnvironment: [Int: [String: String]] = [:]
    private var clients: [(BookiePool, any MetadataStore)] = []

    /// Starts the metadata role and `count` bookies (`bookie-0`…), and waits until all are registered.
    /// `bookieSettings` are extra config lines for every bookie.
    /// `metadataURI`: a store that is already running (etcd) instead of a metadata role of the cluster's own.
    init(bookies count: Int, bookieSettings: String = "", metadataURI: String? = nil) async throws {
        if let metadataURI {
            metadataPort = 0
            uri = metadataURI
        } else {
            let role = try await DaemonProcess.start(["--data-dir", dir.sub("metadata")], role: "metadata")
            metadataProcess = role
            metadataPort = role.port
            uri = "dlog://127.0.0.1:\(metadataPort)"
        }
        self.bookieSettings = bookieSettings
        let initialized = try await runTool(dlogctlPath, ["cluster", "init", "--metadata", uri])
        guard initialized.status == 0 else { throw DaemonError("cluster init failed: \(initialized.stderr)") }
        for index in 0..<count { bookies.append(try await startBookie(index)) }
        try await waitUntilRegistered(count)
    }

    /// The config file of bookie `index` (the same across restarts, so its cookie matches).
    func bookieConfig(_ index: Int) throws -> String {
        let path = dir.sub("bookie\(index).conf")
        try """
            journal_dirs = \(dir.sub("b\(index)/journal"))
            ledger_dirs = \(ledgerDirectory(index))
            journal_file_bytes = 8M
            journal_files_max = 3
            max_frame_bytes = 1M
            allow_shared_device = true
            metadata = \(uri)
            bookie_id = bookie-\(index)
            admin_socket = \(adminSocket(index))
            \(ownSettings[index] ?? bookieSettings)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func ledgerDirectory(_ index: Int) -> String { dir.sub("b\(index)/ledgers") }

    /// Bookie `index`'s admin socket (`dlogctl admin --socket`).
    func adminSocket(_ index: Int) -> String { dir.sub("b\(index).sock") }

    private func startBookie(_ index: Int) async throws -> DaemonProcess {
        try await DaemonProcess.start(["--config", try bookieConfig(index)], environment: ownEnvironment[index] ?? [:])
    }

    /// A metadata outage: SIGKILL of the metadata role, `down` of nothing, then the role again on its port
    /// with its data (every acknowledged change is kept).
    func restartMetadata(after down: Duration) async throws {
        await killMetadata()
        try await Task.sleep(for: down)
        try await startMetadata()
    }

    func killMetadata() async {
        metadata.kill(SIGKILL)
        _ = await metadata.exited()
    }

    func startMetadata() async throws {
        metadataProcess = try await DaemonProcess.start(["--data-dir", dir.sub("metadata"), "--port", "\(metadataPort)"],
                                                 role: "metadata")
    }

    /// The last `lines` lines each bookie logged, for a failing test's message.
    func logTails(_ lines: Int = 25) -> String {
        bookies.enumerated().map { index, bookie in
            "--- bookie-\(index):\n" + bookie.stderr.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    /// The index of a bookie from its id (`bookie-N`).
    func index(of bookie: BookieID) -> Int { Int(bookie.rawValue.dropFirst("bookie-".count))! }

    /// Stops bookie `index` gracefully (its storage checkpoints) and waits for it to exit.
    func stopBookie(_ index: Int) async {
        bookies[index].kill(SIGTERM)
        _ = await bookies[index].exited()
    }

    /// SIGKILLs bookie `index`; with `wipe`, its disks are gone too (a lost machine).
    func killBookie(_ index: Int, wipe: Bool = false) async {
        bookies[index].kill(SIGKILL)
        _ = await bookies[index].exited()
        if wipe { try? FileManager.default.removeItem(atPath: dir.sub("b\(index)")) }
    }

    /// Starts one more bookie (`bookie-N`, N the next index) and waits until it is registered. `settings`: its
    /// config lines instead of the cluster's; `environment`: variables set for it (as systemd sets NOTIFY_SOCKET).
    func addBookie(settings: String? = nil, environment: [String: String] = [:]) async throws {
        ownSettings[bookies.count] = settings
        ownEnvironment[bookies.count] = environment
        bookies.append(try await startBookie(bookies.count))
        try await waitUntilRegistered(BookieID("bookie-\(bookies.count - 1)"))
    }

    func restartBookie(_ index: Int) async throws {
        bookies[index] = try await startBookie(index)
        try await waitUntilRegistered(BookieID("bookie-\(index)"))
    }

    /// Waits (sleeping) until bookie `id` is registered.
    func waitUntilRegistered(_ id: BookieID) async throws {
        let (_, store) = try client()
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let live = try? await Cluster(store: store).bookies(), live.contains(where: { $0.id == id }) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonError("\(id) did not register within 60 s")
    }

    /// Waits (sleeping) until `count` bookies are registered as writable.
    func waitUntilRegistered(_ count: Int) async throws {
        let (_, store) = try client()
        let cluster = Cluster(store: store)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let live = try? await cluster.bookies(), live.filter({ !$0.readOnly }).count >= count { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonError("only some of \(count) bookies registered within 60 s")
    }

    /// A ledger client of its own (its own connections to every bookie), shut down with the cluster.
    func client(_ options: BookiePool.Options = .init()) throws -> (BookiePool, any MetadataStore) {
        let store = try MetadataURI.connect(uri)
        let pool = BookiePool(cluster: Cluster(store: store), options: options)
        clients.append((pool, store))
        return (pool, store)
    }

    func stop() async {
        for (pool, store) in clients {
            await pool.shutdown()
            await store.shutdown()
        }
        clients.removeAll()
        for bookie in bookies {
            bookie.kill(SIGCONT)
            bookie.kill(SIGKILL)
            _ = await bookie.exited()
        }
        metadataProcess?.kill(SIGKILL)
        _ = await metadataProcess?.exited()
    }
}

/// Runs `body` with a process cluster of `count` bookies and always stops it.
func withProcessCluster(bookies count: Int, bookieSettings: String = "", metadataURI: String? = nil,
                        _ body: (ProcessCluster) async throws -> Void) async throws {
    let cluster = try await ProcessCluster(bookies: count, bookieSettings: bookieSettings, metadataURI: metadataURI)
    do {
        try await body(cluster)
    } catch {
        await cluster.stop()
        throw error
    }
    await cluster.stop()
}
