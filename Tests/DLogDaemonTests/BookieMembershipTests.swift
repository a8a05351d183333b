import DLogDaemon
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Testing

/// A real bookie and a real metadata role as child processes: registration, cookies, GC and decommission.
@Suite struct BookieMembershipTests {
    /// A metadata role with an initialized cluster, and the config of a bookie that uses it.
    struct Setup {
        let dir: TempDir
        let metadata: DaemonProcess
        let uri: String
        let cluster: Cluster

        init(initialize: Bool = true) async throws {
            dir = TempDir("dlog-member")
            metadata = try await DaemonProcess.start(["--data-dir", dir.sub("metadata")], role: "metadata")
            uri = "dlog://127.0.0.1:\(metadata.port)"
            cluster = Cluster(store: try MetadataURI.connect(uri))
            if initialize { try await cluster.initialize() }
        }

        /// A bookie config: small journal, short TTL and GC interval, its own directories under `name`.
        func bookieConfig(_ name: String, id: String, gcIntervalMillis: Int = 300, extra: String = "") throws -> String {
            let path = dir.sub("\(name).conf")
            try """
                journal_dirs = \(dir.sub(name + "/journal"))
                ledger_dirs = \(dir.sub(name + "/ledgers"))
                journal_file_bytes = 8M
                journal_files_max = 3
                max_frame_bytes = 1M
                metadata = \(uri)
                bookie_id = \(id)
                rack = /zone-a/rack-1
                registration_ttl_s = 2
                gc_interval_ms = \(gcIntervalMillis)
                \(extra)
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        func stop() async {
            await cluster.store.shutdown()
            metadata.kill(SIGTERM)
            _ = await metadata.exited()
        }
    }

    @Test func bookieRegistersMovesAndLeavesWithItsProcess() async throws {
        // Proves a bookie with --metadata registers on start (with its rack and disks), is listed by
        // `dlogctl bookie list`, leaves at once on SIGTERM, and vanishes within its TTL after SIGKILL.
        let setup = try await Setup()
        let config = try setup.bookieConfig("b1", id: "bookie-1")
        var bookie = try await DaemonProcess.start(["--config", config])
        let registered = try await setup.cluster.bookies()
        #expect(registered.map(\.id) == [BookieID("bookie-1")])
        #expect(registered.first?.readOnly == false && registered.first?.rack == "/zone-a/rack-1")
        #expect(registered.first?.address == "127.0.0.1:\(bookie.port)")
        #expect(registered.first?.disks.map(\.role).sorted() == ["journal", "ledger"])

        let listed = try await runTool(dlogctlPath, ["bookie", "list", "--metadata", setup.uri, "--json"])
        #expect(listed.status == 0)
        #expect(listed.stdout.contains("\"bookie-1\"") && listed.stdout.contains("/zone-a/rack-1"))

        bookie.kill(SIGTERM)
        #expect(await bookie.exited() == 0)
        #expect(try await setup.cluster.bookies().isEmpty, "deregistered on a clean stop, without waiting for the TTL")

        bookie = try await DaemonProcess.start(["--config", config])
        #expect(try await setup.cluster.bookies().count == 1, "a restarted bookie registers again")
        bookie.kill(SIGKILL)
        _ = await bookie.exited()
        try await eventually("the registration of a killed bookie expires", seconds: 10) {
            try await setup.cluster.bookies().isEmpty
        }
        await setup.stop()
    }

    @Test func registrationFollowsTheBookieIntoReadOnly() async throws {
        // Proves a bookie that turns read-only (here: any disk usage is over its threshold) moves its
        // registration from writable to read-only, keeping it alive.
        let setup = try await Setup()
        let config = try setup.bookieConfig("b1", id: "bookie-ro", extra: "disk_usage_threshold = 0.001\ndisk_usage_lwm = 0.001")
        let bookie = try await DaemonProcess.start(["--config", config])
        try await eventually("the registration moves to read-only", seconds: 15) {
            try await setup.cluster.bookies().first?.readOnly == true
        }
        #expect(try await setup.cluster.store.get(ClusterKeys.registration(BookieID("bookie-ro"), readOnly: true)) != nil)
        #expect(try await setup.cluster.store.get(ClusterKeys.registration(BookieID("bookie-ro"), readOnly: false)) == nil)
        bookie.kill(SIGTERM)
        #expect(await bookie.exited() == 0)
        #expect(try await setup.cluster.bookies().isEmpty)
        await setup.stop()
    }

    @Test func bookieDeletesLedgersMetadataNoLongerHas() async throws {
        // Proves the bookie's GC deletes the data of a ledger whose metadata was deleted, and keeps the data
        // of ledgers that still exist; its passes every 300 ms list every ledger's metadata once at most (at the
        // start), looking only at what changed after.
        let setup = try await Setup()
        let socket = setup.dir.sub("b1.sock")
        let bookie = try await DaemonProcess.start(["--config", try setup.bookieConfig("b1", id: "bookie-gc", extra: "admin_socket = \(socket)")])
        let kept = oneCopy(on: [BookieID("bookie-gc")])
        try await setup.cluster.createLedger(LedgerID(1), kept)
        let doomed = try await setup.cluster.createLedger(LedgerID(2), kept)
        let client = try await bookie.client()
        for ledger in [UInt64(1), 2] {
            for e in 0..<5 { try await client.add(key: testKey, entry: entry(ledger, Int64(e))) }
        }
        try await setup.cluster.deleteLedger(LedgerID(2), ifVersion: doomed)
        try await eventually("ledger 2 is garbage-collected", seconds: 15) { try await !bookieHolds(client, 2, entry: 0) }
        #expect(try await client.read(ledger: LedgerID(1), entry: EntryID(4)) == entry(1, 4))
        try await Task.sleep(for: .seconds(1.5))  // five more passes
        let listings = try #require(try await bookieMetric(socket, "dlog_bookie_gc_listings_total"))
        #expect(listings <= 1)
        await client.close()
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
        await setup.stop()
    }

    @Test func bookieFollowsMetadataInsteadOfListingEveryLedger() async throws {
        // Proves GC follows ledger metadata between its rare full listings: with a pass due only once a minute,
        // a ledger deleted from metadata leaves the bookie within seconds, and so does one deleted while the
        // bookie was down (its start lists every ledger once); no other pass lists them. A bookie that listed
        // every ledger at each pass would keep both for the minute.
        let setup = try await Setup()
        let socket = setup.dir.sub("b1.sock")
        let config = try setup.bookieConfig("b1", id: "bookie-feed", gcIntervalMillis: 60_000, extra: "admin_socket = \(socket)")
        var bookie = try await DaemonProcess.start(["--config", config])
        func gc(_ name: String) async throws -> Double? { try await bookieMetric(socket, "dlog_bookie_gc_\(name)_total") }
        let metadata = oneCopy(on: [BookieID("bookie-feed")])
        var versions: [LedgerID: Version] = [:]
        for ledger in 1...3 { versions[LedgerID(UInt64(ledger))] = try await setup.cluster.createLedger(LedgerID(UInt64(ledger)), metadata) }
        var client = try await bookie.client()
        for ledger in [UInt64(1), 2, 3] {
            for e in 0..<3 { try await client.add(key: testKey, entry: entry(ledger, Int64(e))) }
        }
        func holds(_ ledger: UInt64) async throws -> Bool { try await bookieHolds(client, ledger, entry: 2) }
        // The first pass, about a second after the start, begins following metadata (with a listing if the
        // adds came first).
        try await Task.sleep(for: .seconds(2))
        let listed = try #require(try await gc("listings"))
        #expect(listed <= 1)
        try await setup.cluster.deleteLedger(LedgerID(2), ifVersion: versions[LedgerID(2)]!)
        try await eventually("ledger 2 is deleted within seconds of its metadata", seconds: 10) { try await !holds(2) }
        #expect(try await gc("deleted_ledgers") == 1)
        #expect(try await gc("listings") == listed, "following a delete lists nothing")

        await client.close()
        bookie.kill(SIGTERM)
        #expect(await bookie.exited() == 0)
        try await setup.cluster.deleteLedger(LedgerID(3), ifVersion: versions[LedgerID(3)]!)
        bookie = try await DaemonProcess.start(["--config", config])
        client = try await bookie.client()
        try await eventually("ledger 3, deleted while the bookie was down, is deleted after its start", seconds: 10) {
            try await !holds(3)
        }
        #expect(try await holds(1))
        #expect(try await gc("listings") == 1, "one listing at the start")
        #expect(try await gc("deleted_ledgers") == 1)
        await client.close()
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
        await setup.stop()
    }

    @Test func aBookieStopsFollowingPastAThousandChangesUntilItListsAgain() async throws {
        // Proves the bound on what GC follows: once over 1,000 held ledgers changed (1,001 closed at once, as a
        // proxy's drain closes a segment per stream), the bookie stops following metadata, so a delete then waits
        // for the next listing; that listing (`dlogctl admin gc` here; the next pass would make one) follows again,
        // and the next delete goes within seconds.
        let setup = try await Setup()
        let socket = setup.dir.sub("b1.sock")
        let me = BookieID("bookie-many")
        let bookie = try await DaemonProcess.start(["--config", try setup.bookieConfig("b1", id: me.rawValue, gcIntervalMillis: 60_000,
                                                                                      extra: "admin_socket = \(socket)")])
        func admin(_ args: [String]) async throws -> String {
            try await runTool(dlogctlPath, ["admin", "--socket", socket] + args).stdout
        }
        try await Task.sleep(for: .seconds(2))  // the first pass: nothing held, the bookie follows from now on
        let open = oneCopy(on: [me]), closed = oneCopy(on: [me], .closed, lastEntry: EntryID(0))
        let count: UInt64 = 1_001
        var versions: [UInt64: Version] = [:]
        for ledger in 1...count { versions[ledger] = try await setup.cluster.createLedger(LedgerID(ledger), open) }
        let client = try await bookie.client()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for ledger in 1...count { group.addTask { try await client.add(key: testKey, entry: entry(ledger, 0)) } }
            try await group.waitForAll()
        }
        for ledger in 1...count { versions[ledger] = try await setup.cluster.updateLedger(LedgerID(ledger), closed, ifVersion: versions[ledger]!) }
        func holds(_ ledger: UInt64) async throws -> Bool { try await bookieHolds(client, ledger, entry: 0) }
        try await setup.cluster.deleteLedger(LedgerID(1), ifVersion: versions[1]!)
        try await Task.sleep(for: .seconds(3))
        #expect(try await holds(1), "deleted while GC no longer follows metadata: it waits for the next listing")
        #expect(try await bookieMetric(socket, "dlog_bookie_gc_listings_total") == 0)

        let listed = try await admin(["gc", "--json"])
        #expect(listed.contains("\"L1\""), "the listing deletes ledger 1: \(listed)")
        #expect(try await !holds(1))
        try await setup.cluster.deleteLedger(LedgerID(2), ifVersion: versions[2]!)
        try await eventually("ledger 2 goes within seconds of its delete: the listing follows metadata again", seconds: 10) {
            try await !holds(2)
        }
        #expect(try await holds(3))
        #expect(try await bookieMetric(socket, "dlog_bookie_gc_listings_total") == 1)
        await client.close()
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
        await setup.stop()
    }

    @Test func bookieDeletesCopiesHealingLeftBehindOnlyWhenNoWorkerMayNeedThem() async throws {
        // Proves the bookie's GC deletes its copies of a closed ledger whose metadata names other bookies only
        // (healing moved them), but keeps them while a worker holds the ledger's re-replication lock (it may be
        // copying to this bookie, to name it next) or the ledger is marked, and always keeps an open ledger's and
        // a ledger's that names it; released or unmarked, the copies go at the next GC.
        let setup = try await Setup()
        let me = BookieID("bookie-left")
        // No healing of its own: the test plays the worker.
        let bookie = try await DaemonProcess.start(["--config", try setup.bookieConfig("b1", id: me.rawValue, extra: "autorecovery = false")])
        func metadata(_ bookies: [BookieID], _ state: LedgerMetadata.State) -> LedgerMetadata {
            oneCopy(on: bookies, state, lastEntry: state == .closed ? EntryID(2) : .none)
        }
        let elsewhere = BookieID("bookie-elsewhere"), marked = BookieID("bookie-marked")
        let moved = LedgerID(1), locked = LedgerID(2), unhealed = LedgerID(3), open = LedgerID(4), mine = LedgerID(5)
        try await setup.cluster.createLedger(moved, metadata([elsewhere], .closed))
        try await setup.cluster.createLedger(locked, metadata([elsewhere], .closed))
        try await setup.cluster.createLedger(unhealed, metadata([marked], .closed))
        try await setup.cluster.createLedger(open, metadata([elsewhere], .open))
        try await setup.cluster.createLedger(mine, metadata([me], .closed))
        let worker = try await setup.cluster.store.grantLease(ttlSeconds: 30)
        #expect(try await setup.cluster.hold(RecoveryKeys.lock(locked), RecoveryHolder(bookie: elsewhere), lease: worker.id))
        #expect(try await setup.cluster.markLedgers(naming: marked, reason: .lost) == 1)
        let client = try await bookie.client()
        for ledger in [moved, locked, unhealed, open, mine] {
            for e in 0..<3 { try await client.add(key: testKey, entry: entry(ledger.rawValue, Int64(e))) }
        }
        func holds(_ ledger: LedgerID) async throws -> Bool { try await bookieHolds(client, ledger.rawValue, entry: 2) }
        try await eventually("the moved ledger's copies are deleted", seconds: 15) { try await !holds(moved) }
        try await Task.sleep(for: .seconds(1))  // three more GC passes
        for ledger in [locked, unhealed, open, mine] { #expect(try await holds(ledger), "\(ledger) was deleted") }
        try await setup.cluster.release(RecoveryKeys.lock(locked), lease: worker.id)
        _ = try await setup.cluster.unmark(unhealed) { _ in true }
        try await eventually("the released and the unmarked ledgers' copies are deleted", seconds: 15) {
            let locked = try await holds(locked), unhealed = try await holds(unhealed)
            return !locked && !unhealed
        }
        for ledger in [open, mine] { #expect(try await holds(ledger), "\(ledger) was deleted") }
        await client.close()
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
        await setup.stop()
    }

    @Test func bookieNeverCollectsGarbageAgainstAnotherCluster() async throws {
        // Proves that when metadata comes back empty (a metadata role restarted on a fresh directory), the
        // bookie neither deletes its ledgers nor registers itself there.
        let setup = try await Setup()
        let bookie = try await DaemonProcess.start(["--config", try setup.bookieConfig("b1", id: "bookie-keep")])
        let metadata = oneCopy(on: [BookieID("bookie-keep")])
        try await setup.cluster.createLedger(LedgerID(7), metadata)
        let client = try await bookie.client()
        for e in 0..<3 { try await client.add(key: testKey, entry: entry(7, Int64(e))) }
        setup.metadata.kill(SIGKILL)
        _ = await setup.metadata.exited()
        let empty = try await DaemonProcess.start(["--data-dir", setup.dir.sub("empty-metadata"), "--port", "\(setup.metadata.port)"],
                                                  role: "metadata")
        // Several GC intervals and more than the registration TTL.
        try await Task.sleep(for: .seconds(4))
        #expect(try await client.read(ledger: LedgerID(7), entry: EntryID(2)) == entry(7, 2))
        let store = try MetadataURI.connect(setup.uri)
        #expect(try await Cluster(store: store).bookies().isEmpty, "the bookie registered in a cluster it never joined")
        await store.shutdown()
        await client.close()
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
        empty.kill(SIGTERM)
        _ = await empty.exited()
        await setup.cluster.store.shutdown()
    }

    @Test func bookieWithOtherDisksOrNoClusterIsRefused() async throws {
        // Proves a bookie whose disks do not match its cookie in metadata refuses to start, naming the
        // mismatch, and that a bookie pointed at an uninitialized cluster says to run `cluster init`.
        let setup = try await Setup()
        let first = try await DaemonProcess.start(["--config", try setup.bookieConfig("b1", id: "bookie-x")])
        first.kill(SIGTERM)
        #expect(await first.exited() == 0)
        // Same id, fresh directories: a wiped or swapped disk set.
        let impostor = try DaemonProcess(["--config", try setup.bookieConfig("b2", id: "bookie-x")])
        #expect(await impostor.exited() == 2)
        #expect(impostor.stderr.contains("does not match its cookie") && impostor.stderr.contains("decommission"))
        await setup.stop()

        let empty = try await Setup(initialize: false)
        let orphan = try DaemonProcess(["--config", try empty.bookieConfig("b1", id: "bookie-y")])
        #expect(await orphan.exited() == 2)
        #expect(orphan.stderr.contains("dlogctl cluster init"))
        await empty.stop()
    }

    @Test func decommissionRefusesWhileNeededThenFreesTheID() async throws {
        // Proves `dlogctl bookie decommission` refuses a running bookie and one that ledgers still name, then
        // removes the cookie so the id can start afresh on new disks; and `cluster init` refuses a second time.
        let setup = try await Setup()
        let again = try await runTool(dlogctlPath, ["cluster", "init", "--metadata", setup.uri])
        #expect(again.status == 1 && again.stderr.contains("already initialized"))
        let stats = try await runTool(dlogctlPath, ["metadata", "stats", "--metadata", setup.uri, "--json"])
        #expect(stats.status == 0 && stats.stdout.contains("\"revision\":"))
        let bookie = try await DaemonProcess.start(["--config", try setup.bookieConfig("b1", id: "bookie-d")])
        let running = try await runTool(dlogctlPath, ["bookie", "decommission", "bookie-d", "--metadata", setup.uri])
        #expect(running.status == 1 && running.stderr.contains("is running"))
        bookie.kill(SIGTERM)
        _ = await bookie.exited()
        let holding = oneCopy(on: [BookieID("bookie-d")])
        let version = try await setup.cluster.createLedger(LedgerID(9), holding)
        // A ledger still names it: its copies must move first. Without a bookie to take them, the mark waits.
        let busy = try await runTool(dlogctlPath, ["bookie", "decommission", "bookie-d", "--no-wait", "--metadata", setup.uri])
        #expect(busy.status == 0 && busy.stdout.contains("1 ledger(s) marked"), "\(busy)")
        let shown = try await runTool(dlogctlPath, ["ledger", "show", "9", "--metadata", setup.uri])
        #expect(shown.status == 0 && shown.stdout.contains("bookie-d retiring"), "\(shown)")
        try await setup.cluster.deleteLedger(LedgerID(9), ifVersion: version)
        #expect(try await setup.cluster.marks(of: LedgerID(9)) == nil, "deleting a ledger deletes its marks")
        let done = try await runTool(dlogctlPath, ["bookie", "decommission", "bookie-d", "--metadata", setup.uri])
        #expect(done.status == 0, "\(done.stderr)")
        let fresh = try await DaemonProcess.start(["--config", try setup.bookieConfig("b2", id: "bookie-d")])
        fresh.kill(SIGTERM)
        #expect(await fresh.exited() == 0)
        await setup.stop()
    }
}

/// Whether the bookie still holds `ledger`, read at `entry` (which the test wrote there): false once it is deleted.
func bookieHolds(_ client: BookieClient, _ ledger: UInt64, entry e: Int64) async throws -> Bool {
    do {
        return try await client.read(ledger: LedgerID(ledger), entry: EntryID(e)) == entry(ledger, e)
    } catch let failure as BookieClient.Failure where failure.status == .noLedger {
        return false
    }
}

/// The metadata of a ledger with one copy (E = Qw = Qa = 1), on `bookies`' one fragment from entry 0.
func oneCopy(on bookies: [BookieID], _ state: LedgerMetadata.State = .open, lastEntry: EntryID = .none) -> LedgerMetadata {
    LedgerMetadata(ensembleSize: 1, writeQuorum: 1, ackQuorum: 1, passwordHash: [],
                   fragments: [.init(firstEntry: EntryID(0), bookies: bookies)], state: state, lastEntry: lastEntry,
                   creationTime: 0)
}

/// One sample of the bookie's metrics, read through its admin socket (`dlogctl admin metrics`).
func bookieMetric(_ socket: String, _ name: String) async throws -> Double? {
    let scraped = try await runTool(dlogctlPath, ["admin", "--socket", socket, "metrics"])
    return Exposition(scraped.stdout).values(name).first
}

/// The dlogctl binary built next to these tests.
let dlogctlPath: String = {
    if let p = ProcessInfo.processInfo.environment["DLOGCTL_BIN"] { return p }
    return (dlogdPath as NSString).deletingLastPathComponent + "/dlogctl"
}()

/// Runs a tool to completion (bounded) and returns its status and output.
func runTool(_ path: String, _ arguments: [String], seconds: Double = 30) async throws -> (status: Int32, stdout: String, stderr: String) {
    // Output goes to files, not pipes: a child another test spawns at the same moment can inherit a pipe's
    // write end (Foundation closes the parent's descriptors in a child from a list made before it spawns), and
    // reading a pipe to its end would then wait, holding one of the few threads every test shares, until that
    // other child exits.
    let dir = TempDir("dlog-tool")
    let outPath = dir.sub("stdout"), errPath = dir.sub("stderr")
    guard FileManager.default.createFile(atPath: outPath, contents: nil),
          FileManager.default.createFile(atPath: errPath, contents: nil),
          let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: errPath) else {
        throw DaemonError("cannot create output files for \(path) in \(dir.path)")
    }
    defer { try? out.close(); try? err.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Sleeping, not holding one of the few threads every test shares.
    var status = await process.exitStatus(within: seconds)
    if status == nil {
        kill(process.processIdentifier, SIGKILL)
        status = await process.exitStatus(within: 10)
    }
    let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return (status ?? -1, stdout, stderr + (status == nil ? "\n(the test saw no exit of \(path))" : ""))
}

/// Polls `condition` until it holds; fails the test with `what` after `seconds`.
func eventually(_ what: String, seconds: Double, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("timed out: \(what)")
}
