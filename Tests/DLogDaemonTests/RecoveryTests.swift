import DistributedLog
import DLogLedger
import DLogMetadata
import DLogTestSupport
import DLogWire
import Foundation
import Synchronization
import Testing

/// Healing, with real processes. One serialized suite: each test runs a cluster of its own, and several at once
/// would only make each slower on a small machine.
@Suite(.serialized) struct RecoveryTests {
    static let e3 = Quorums(ensembleSize: 3, writeQuorum: 3, ackQuorum: 2)!

    @Test(arguments: ["metadata role", "3-member etcd"])
    func aLostBookieIsReplacedEverywhere(_ metadata: String) async throws {
        // Proves a bookie that dies for good (SIGKILL, data deleted) is healed around: after the grace period the
        // auditor declares it lost, workers copy every entry it held to other bookies and replace it in metadata;
        // then every bookie of every write set answers every entry itself, every entry reads back, no ledger names
        // the dead bookie, and it can be decommissioned at once and rejoin on new disks. (Before, its ledgers
        // stayed one copy short, and it could neither leave nor rejoin.)
        let etcd = metadata == "3-member etcd" ? try await EtcdTrio.start() : nil
        defer { etcd?.stop() }
        try await withProcessCluster(bookies: 5, bookieSettings: fastHealing, metadataURI: etcd?.uri) { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let ids = try await writeClosedLedgers(pool, count: 8, entries: 40, quorums: Self.e3)
            let victim = try #require(try await meta.ledger(ids[0])?.metadata.fragments[0].bookies[0])
            let named = try await ledgersNaming(victim, meta)
            #expect(named >= 1)
            await cluster.killBookie(cluster.index(of: victim), wipe: true)
            try await eventually("no ledger names \(victim) and no marks are left") {
                let named = try await ledgersNaming(victim, meta)
                let marked = try await markedLedgers(meta)
                return named == 0 && marked.isEmpty
            }
            let problems = try await replicationProblems(pool, ids)
            #expect(problems.isEmpty, "\(problems)")
            for id in ids {
                let reader = try await LedgerReader.open(id, password: "pw", pool: pool)
                let all = try await reader.read(from: EntryID(0), through: EntryID(39))
                #expect(all.count == 40)
            }
            let status = try await runTool(dlogctlPath, ["recovery", "status", "--json", "--metadata", cluster.uri])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status)")
            #expect((object["lost_bookies"] as? [[String: Any]])?.first?["bookie"] as? String == victim.rawValue)
            #expect(object["under_replicated_ledgers"] as? Int == 0)
            #expect((object["bytes_copied"] as? Int ?? 0) > 0, "\(status.stdout)")
            let gone = try await runTool(dlogctlPath, ["bookie", "decommission", victim.rawValue, "--metadata", cluster.uri])
            #expect(gone.status == 0 && gone.stdout.contains("decommissioned bookie \(victim)"), "\(gone)")
            #expect(try await meta.lostBookies().isEmpty)
            // Its disks replaced (here: wiped), the bookie rejoins under its old id as a new identity.
            try await cluster.restartBookie(cluster.index(of: victim))
            #expect(try await meta.cookie(of: victim) != nil)
        }
    }

    @Test func aQuickRestartCopiesNothing() async throws {
        // Proves a bookie restarted within lost_bookie_grace_s (a crash and restart, an upgrade) triggers no
        // copying: no bookie is declared lost, no ledger is marked, no byte is copied.
        try await withProcessCluster(bookies: 4, bookieSettings: "lost_bookie_grace_s = 30\nregistration_ttl_s = 3") { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let ids = try await writeClosedLedgers(pool, count: 3, entries: 20, quorums: Self.e3)
            let victim = try #require(try await meta.ledger(ids[0])?.metadata.fragments[0].bookies[0])
            let named = try await ledgersNaming(victim, meta)
            try await eventually("an auditor is elected") { try await meta.auditor() != nil }
            await cluster.killBookie(cluster.index(of: victim))
            try await cluster.restartBookie(cluster.index(of: victim))
            try await Task.sleep(for: .seconds(3))
            #expect(try await meta.lostBookies().isEmpty)
            #expect(try await markedLedgers(meta).isEmpty)
            #expect(try await meta.workerProgress().allSatisfy { $0.bytesCopied == 0 })
            #expect(try await ledgersNaming(victim, meta) == named)
        }
    }

    @Test func writtenAroundEntriesGetTheirCopiesWhenASpareJoins() async throws {
        // Proves entries a writer confirmed while writing around a dead bookie (fewer than Qw copies, no spare
        // bookie) are marked by the writer, and are back to Qw copies once a spare bookie joins.
        try await withProcessCluster(bookies: 3, bookieSettings: fastHealing) { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let writer = try await newE3Ledger(pool)
            for n in 0..<20 { _ = try await writer.append(Array("before \(n)".utf8)) }
            let victim = writer.ensemble[1]
            await cluster.killBookie(cluster.index(of: victim), wipe: true)
            for n in 0..<30 { _ = try await writer.append(Array("around \(n)".utf8)) }
            try await writer.close()
            try await eventually("the writer marked its written-around bookie") {
                try await meta.marks(of: writer.id)?.0.marks.contains { $0.bookie == victim } == true
            }
            // No spare yet: once the bookie is declared lost, the mark waits for a bookie to take its place, and
            // the status says so.
            try await eventually("the status says the copies wait for a bookie") {
                let waiting = try await runTool(dlogctlPath, ["recovery", "status", "--metadata", cluster.uri])
                return waiting.stdout.contains("lost bookies: \(victim)")
                    && waiting.stdout.contains("waiting: no bookie can take \(victim)'s copies of ledger \(writer.id)")
            }
            #expect(try await meta.marks(of: writer.id) != nil)
            try await cluster.addBookie()
            try await eventually("the ledger is whole again") {
                let marks = try await meta.marks(of: writer.id)
                let named = try await ledgersNaming(victim, meta)
                return marks == nil && named == 0
            }
            let problems = try await replicationProblems(pool, [writer.id])
            #expect(problems.isEmpty, "\(problems)")
        }
    }

    @Test func aCopyingBookieSaysSoInItsStatusLine() async throws {
        // Proves a bookie's systemd STATUS line names the ledger its worker copies while it copies, and no longer
        // does once the copy is done. The first three bookies do no healing, so the one added after the loss (told
        // of a notify socket and a watchdog the way systemd tells it) is the auditor and the only worker, and it
        // is paced so that the copy lasts seconds.
        try await withProcessCluster(bookies: 3, bookieSettings: fastHealing + "\nautorecovery = false") { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let id = try await writeClosedLedgers(pool, count: 1, entries: 40, quorums: Self.e3, size: 16 << 10)[0]
            let victim = BookieID("bookie-0")
            await cluster.killBookie(0, wipe: true)
            let sockets = TempDir("dlog-copy-status")
            let listener = try NotifyListener(path: sockets.sub("notify.sock"))
            defer { listener.close() }
            try await cluster.addBookie(settings: fastHealing + "\nreplication_rate_bytes = 65536", environment: [
                "NOTIFY_SOCKET": sockets.sub("notify.sock"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": ""])
            var seen: [String] = []
            for _ in 0..<3 where !seen.contains(where: { $0.contains("copying ledger \(id.rawValue)") }) {
                seen += await listener.pings(20)
            }
            #expect(seen.contains { $0.contains("STATUS=") && $0.contains("copying ledger \(id.rawValue)") },
                    "a STATUS line named the copy of \(id): \(seen)")
            try await eventually("the ledger is whole again") {
                let marks = try await meta.marks(of: id)
                let named = try await ledgersNaming(victim, meta)
                return marks == nil && named == 0
            }
            // The socket still holds the pings sent meanwhile: the newest ones say the copy is over.
            var after: [String] = []
            for _ in 0..<3 where !(after.last.map { $0.contains("STATUS=") && !$0.contains("copying") } ?? false) {
                after += await listener.pings(20).filter { $0.contains("WATCHDOG=1") }
            }
            #expect(after.last.map { $0.contains("STATUS=writable") && !$0.contains("copying") } == true, "\(after.suffix(5))")
        }
    }

    @Test func aReplacedBookieThatComesBackDropsItsOldCopies() async throws {
        // Proves a bookie that was declared lost and comes back with its disks, after healing replaced it in
        // closed ledgers, deletes its copies of them at its next GC (before, they stayed until each ledger was
        // deleted), while every entry still reads back from every bookie its ledger names; a new ledger that names
        // it keeps its copies through later GC passes.
        try await withProcessCluster(bookies: 4, bookieSettings: fastHealing + "\ngc_interval_ms = 300") { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let ids = try await writeClosedLedgers(pool, count: 4, entries: 20, quorums: Self.e3)
            let victim = try #require(try await meta.ledger(ids[0])?.metadata.fragments[0].bookies[0])
            let index = cluster.index(of: victim)
            let held = try await Self.held(by: victim, of: ids, pool)
            #expect(held.contains(ids[0]))
            await cluster.killBookie(index)
            try await eventually("no ledger names \(victim) and no marks are left") {
                let named = try await ledgersNaming(victim, meta)
                let marked = try await markedLedgers(meta)
                return named == 0 && marked.isEmpty
            }
            try await cluster.restartBookie(index)
            try await eventually("\(victim) no longer holds the ledgers it was replaced in", timeout: .seconds(30)) {
                try await Self.held(by: victim, of: ids, pool).isEmpty
            }
            #expect(cluster.bookies[index].stderr.contains("GC deleted the copies of a closed ledger whose metadata no longer names this bookie"))
            #expect(try await replicationProblems(pool, ids).isEmpty)
            for id in ids {
                let reader = try await LedgerReader.open(id, password: "pw", pool: pool)
                #expect(try await reader.read(from: EntryID(0), through: EntryID(19)).count == 20)
            }
            var named: LedgerID?
            for _ in 0..<12 where named == nil {
                let id = try await writeClosedLedgers(pool, count: 1, entries: 20, quorums: Self.e3)[0]
                if try await meta.ledger(id)?.metadata.fragments[0].bookies.contains(victim) == true { named = id }
            }
            let kept = try #require(named, "no new ledger was placed on \(victim)")
            try await Task.sleep(for: .seconds(2))
            #expect(try await Self.held(by: victim, of: [kept], pool) == [kept])
            #expect(try await replicationProblems(pool, [kept]).isEmpty)
        }
    }

    /// Those of `ids` that `bookie` answers entry 0 of itself.
    static func held(by bookie: BookieID, of ids: [LedgerID], _ pool: BookiePool) async throws -> [LedgerID] {
        var held: [LedgerID] = []
        for id in ids {
            let answer = try await pool.send(.read(ledger: id, entry: EntryID(0), fenceWith: nil), to: bookie,
                                             lane: id.rawValue, timeout: .seconds(10))
            if case .entry = answer { held.append(id) }
        }
        return held
    }

    @Test func badInputGetsOneClearLine() async throws {
        // Proves decommission and drain refuse what they cannot do, each with one clear line and exit 1: an
        // unknown id, a running bookie without drain, a stopped bookie with drain, and a drain that would leave
        // too few bookies for the ledgers' ensembles (naming how many are needed).
        try await withProcessCluster(bookies: 3, bookieSettings: fastHealing) { cluster in
            let (pool, _) = try cluster.client()
            _ = try await writeClosedLedgers(pool, count: 1, entries: 5, quorums: Self.e3)
            func ctl(_ args: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
                try await runTool(dlogctlPath, args + ["--metadata", cluster.uri], seconds: 20)
            }
            func oneLine(_ r: (status: Int32, stdout: String, stderr: String)) -> Bool {
                r.status == 1 && r.stderr.split(separator: "\n").count == 1 && r.stdout.isEmpty
            }
            let unknown = try await ctl(["bookie", "decommission", "bookie-9"])
            #expect(oneLine(unknown) && unknown.stderr.contains("bookie-9 has no cookie"), "\(unknown)")
            let running = try await ctl(["bookie", "decommission", "bookie-0"])
            #expect(oneLine(running) && running.stderr.contains("is running") && running.stderr.contains("drain"), "\(running)")
            let tooFew = try await ctl(["bookie", "drain", "bookie-0"])
            #expect(oneLine(tooFew) && tooFew.stderr.contains("leave 2 writable bookie(s)")
                    && tooFew.stderr.contains("ensemble of 3") && tooFew.stderr.contains("add 1"), "\(tooFew)")
            await cluster.stopBookie(2)
            let stopped = try await ctl(["bookie", "drain", "bookie-2"])
            #expect(oneLine(stopped) && stopped.stderr.contains("not running"), "\(stopped)")
            // Lost with no bookie to take its place: the marks wait, and the status says why.
            try await eventually("bookie-2 is declared lost and its ledger waits") {
                let status = try await ctl(["recovery", "status"])
                return status.stdout.contains("lost bookies: bookie-2") && status.stdout.contains("waiting: no bookie can take bookie-2")
            }
        }
    }

    @Test func drainUnderLoadLosesNothing() async throws {
        // Proves a live bookie is drained under write load: it turns read-only, writers move off it, its copies
        // move to the others, and at the end no ledger names it and it has left the registry, while writes went
        // on and every acknowledged entry reads back.
        try await withProcessCluster(bookies: 4, bookieSettings: fastHealing) { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let first = try await writeClosedLedgers(pool, count: 3, entries: 30, quorums: Self.e3)
            let victim = try #require(try await meta.ledger(first[0])?.metadata.fragments[0].bookies[0])
            let stop = StopFlag()
            let acked = Mutex<[LedgerID: [EntryID]]>([:])
            let load = Task {
                var rng = SystemRandomNumberGenerator()
                let allocator = LedgerIDAllocator(cluster: pool.cluster)
                while !stop.isSet {
                    let writer = try await LedgerWriter.create(quorums: Self.e3, password: "pw", pool: pool, allocator: allocator, using: &rng)
                    for n in 0..<60 where !stop.isSet {
                        let id = try await writer.append(Array("load \(n)".utf8))
                        acked.withLock { $0[writer.id, default: []].append(id) }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    try await writer.close()
                }
            }
            try await Task.sleep(for: .seconds(1))
            let drain = try await runTool(dlogctlPath, ["bookie", "drain", victim.rawValue, "--json", "--metadata", cluster.uri],
                                          seconds: 120)
            let before = acked.withLock { $0.values.reduce(0) { $0 + $1.count } }
            try await Task.sleep(for: .milliseconds(500))
            let after = acked.withLock { $0.values.reduce(0) { $0 + $1.count } }
            stop.set()
            try await load.value
            #expect(drain.status == 0 && drain.stdout.contains("\"done\":true"), "\(drain)")
            #expect(after > before, "writes went on after the drain")
            #expect(try await ledgersNaming(victim, meta) == 0)
            #expect(try await !meta.bookies().contains { $0.id == victim })
            let ids = first + acked.withLock { Array($0.keys) }
            #expect(try await replicationProblems(pool, ids).isEmpty)
            for (id, entries) in acked.withLock({ $0 }) {
                let reader = try await LedgerReader.open(id, password: "pw", pool: pool)
                for e in entries { _ = try await reader.read(e) }
            }
        }
    }

    @Test(arguments: ["metadata role", "3-member etcd"])
    func theAuditorAndAWorkerMayDieMidway(_ metadata: String) async throws {
        // Proves healing survives its own crashes: copies are paced slowly, a bookie is lost (data deleted), then
        // the bookie holding a ledger lock (a worker mid-copy) is SIGKILLed, and after it the auditor's bookie;
        // both come back later with their disks (so no ledger loses every copy). The lost bookie's marks survive
        // the crashes, other bookies take over as auditor and workers, and the cluster ends fully replicated with
        // no ledger naming the lost bookie; meanwhile no live bookie named in metadata ever lacked its copies, and
        // no fragment ever named one bookie twice (a copy never goes to a bookie already in its write set). With
        // etcd, one of its members is SIGKILLed mid-copy too.
        let etcd = metadata == "3-member etcd" ? try await EtcdTrio.start() : nil
        defer { etcd?.stop() }
        try await withProcessCluster(bookies: 6, bookieSettings: fastHealing + "\nreplication_rate_bytes = 20K",
                                     metadataURI: etcd?.uri) { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let ids = try await writeClosedLedgers(pool, count: 6, entries: 60, quorums: Self.e3, size: 1000)
            let victim = try #require(try await meta.ledger(ids[0])?.metadata.fragments[0].bookies[0])
            await cluster.killBookie(cluster.index(of: victim), wipe: true)
            var holder: BookieID?
            var locked: LedgerID?
            try await eventually("a worker holds a ledger lock", cluster: cluster) {
                guard let lock = try await store.list(prefix: RecoveryKeys.locks).items.first else { return false }
                holder = try JSONDecoder().decode(RecoveryHolder.self, from: Data(lock.value)).bookie
                locked = UInt64(lock.key.dropFirst(RecoveryKeys.locks.count)).map { LedgerID($0) }
                return holder != victim
            }
            let worker = try #require(holder), lockedID = try #require(locked)
            await cluster.killBookie(cluster.index(of: worker))
            etcd?.kill(1)
            // Read through the member's loss: a request in flight then gets "leader changed", which a client retries.
            try await eventually("the mark survives its worker", timeout: .seconds(30), cluster: cluster) {
                try await meta.marks(of: lockedID) != nil
            }
            var crashed = [worker]
            var elected: BookieID?
            try await eventually("an auditor is elected", timeout: .seconds(30), cluster: cluster) {
                elected = try await meta.auditor()?.bookie
                return elected != nil
            }
            let auditor = try #require(elected)
            if auditor != worker && auditor != victim {
                await cluster.killBookie(cluster.index(of: auditor))
                crashed.append(auditor)
            }
            try await eventually("another bookie is the auditor", cluster: cluster) {
                guard let now = try await meta.auditor()?.bookie else { return false }
                return !crashed.contains(now) && now != victim
            }
            for bookie in crashed { try await cluster.restartBookie(cluster.index(of: bookie)) }
            let watching = Task { () -> [String] in
                var seen: [String] = []
                while !Task.isCancelled && seen.isEmpty {
                    seen = (try? await namedBookiesLackingCopies(pool, ids, dead: [victim])) ?? []
                    try? await Task.sleep(for: .milliseconds(300))
                }
                return seen
            }
            try await eventually("no ledger names \(victim) and no marks are left", timeout: .seconds(150), cluster: cluster) {
                let named = try await ledgersNaming(victim, meta)
                let marked = try await markedLedgers(meta)
                return named == 0 && marked.isEmpty
            }
            watching.cancel()
            let lacking = await watching.value
            #expect(lacking.isEmpty, "\(lacking)")
            #expect(try await replicationProblems(pool, ids).isEmpty)
        }
    }

    @Test func aFlippedBitIsFoundByScrubAndRepaired() async throws {
        // Proves scrub finds a bit flipped in one replica's entry log, logs it with file and offset, marks it,
        // and a worker repairs it from another replica; meanwhile that bookie never returns the damaged bytes
        // (it answers CORRUPT_ENTRY) and readers still get the entry. The bookies' metrics count it all.
        try await withProcessCluster(bookies: 3, bookieSettings: fastHealing + "\nmetrics_port = 0") { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let writer = try await newE3Ledger(pool)
            for n in 0..<30 { _ = try await writer.append(Array("bitrot entry \(n) payload".utf8)) }
            try await writer.close()
            let victim = 1
            let socket = cluster.adminSocket(victim)
            let marker = Array("bitrot entry 17 payload".utf8)
            var file = "", at = 0
            try await eventually("the entries reach an entry log on bookie-\(victim)") {
                _ = try await runTool(dlogctlPath, ["admin", "--socket", socket, "checkpoint"])
                for name in try FileManager.default.contentsOfDirectory(atPath: cluster.ledgerDirectory(victim))
                where name.hasPrefix("entrylog-") && name.hasSuffix(".log") {  // not one still being written
                    let path = cluster.ledgerDirectory(victim) + "/" + name
                    let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
                    if let i = bytes.firstRange(of: marker)?.lowerBound { (file, at) = (path, i); return true }
                }
                return false
            }
            let handle = try #require(FileHandle(forUpdatingAtPath: file))
            try handle.seek(toOffset: UInt64(at + 13))
            let byte = try #require(try handle.read(upToCount: 1)).first!
            try handle.seek(toOffset: UInt64(at + 13))
            try handle.write(contentsOf: [byte ^ 0x04])
            try handle.close()
            let direct = try await pool.send(.read(ledger: writer.id, entry: EntryID(17), fenceWith: nil),
                                             to: BookieID("bookie-\(victim)"), lane: writer.id.rawValue, timeout: .seconds(10))
            guard case .failed(.corruptEntry, _) = direct else {
                Issue.record("the damaged replica answered \(direct)")
                return
            }
            let reader = try await LedgerReader.open(writer.id, password: "pw", pool: pool)
            #expect(Array(try await reader.read(EntryID(17)).suffix(marker.count)) == marker)
            let scrub = try await runTool(dlogctlPath, ["admin", "--socket", socket, "--json", "scrub"], seconds: 60)
            #expect(scrub.status == 0, "\(scrub)")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(scrub.stdout.utf8)) as? [String: Any], "\(scrub)")
            let damaged = try #require(status["damaged"] as? [[String: Any]])
            #expect(damaged.count == 1 && damaged.first?["entry"] as? Int == 17 && damaged.first?["file"] as? String == file,
                    "\(damaged)")
            #expect(cluster.bookies[victim].stderr.contains("scrub found a damaged entry"))
            #expect(cluster.bookies[victim].stderr.contains("offset"))
            try await eventually("the damaged entry is repaired") {
                guard try await meta.marks(of: writer.id) == nil else { return false }
                let answer = try await pool.send(.read(ledger: writer.id, entry: EntryID(17), fenceWith: nil),
                                                 to: BookieID("bookie-\(victim)"), lane: writer.id.rawValue, timeout: .seconds(10))
                guard case .entry(let bytes) = answer else { return false }
                return Array(bytes.suffix(marker.count)) == marker
            }
            let scrapes = try cluster.bookies.map { bookie -> String in
                let log = bookie.stderr
                let range = try #require(log.range(of: "metrics serving address=127.0.0.1:"), "\(log)")
                return try httpGet(port: try #require(Int(log[range.upperBound...].prefix { $0.isNumber })), path: "/metrics")
            }
            #expect(scrapes[victim].contains("dlog_scrub_damaged_entries_total 1"), "\(scrapes[victim])")
            #expect(scrapes.allSatisfy { $0.contains("dlog_scrub_bytes_total") && $0.contains("dlog_recovery_copy_errors_total 0") })
            #expect(scrapes.filter { $0.split(separator: "\n").contains("dlog_recovery_auditor 1") }.count == 1,
                    "exactly one auditor: \(cluster.logTails())")
            let copied = scrapes.compactMap { scrape in
                scrape.split(separator: "\n").first { $0.hasPrefix("dlog_recovery_bytes_copied_total ") }
                    .flatMap { Double($0.split(separator: " ")[1]) }
            }
            #expect(copied.reduce(0, +) > 0, "a worker counted the repair's bytes")
        }
    }

    @Test func anAuditFindsCopiesMissingOnALiveBookie() async throws {
        // Proves the on-demand audit (`dlogctl recovery audit`) compares metadata with what bookies hold
        // (LIST_ENTRIES): entries written around a bookie that came back, with the writer's own mark lost,
        // are found missing and copied back to it.
        try await withProcessCluster(bookies: 3, bookieSettings: "lost_bookie_grace_s = 60\nregistration_ttl_s = 3") { cluster in
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            let writer = try await newE3Ledger(pool)
            for n in 0..<10 { _ = try await writer.append(Array("audit \(n)".utf8)) }
            let victim = cluster.index(of: writer.ensemble[2])
            await cluster.killBookie(victim)
            for n in 10..<25 { _ = try await writer.append(Array("audit \(n)".utf8)) }
            try await writer.close()
            try await eventually("the writer's mark") { try await meta.marks(of: writer.id) != nil }
            // As if the writer had died before marking.
            try await meta.unmark(writer.id) { _ in true }
            try await cluster.restartBookie(victim)
            #expect(try await replicationProblems(pool, [writer.id]).count > 0)
            let asked = try await runTool(dlogctlPath, ["recovery", "audit", "--metadata", cluster.uri])
            #expect(asked.status == 0 && asked.stdout.contains("audit requested"), "\(asked)")
            try await eventually("the audit found the gap and a worker filled it") {
                let marks = try await meta.marks(of: writer.id)
                let problems = try await replicationProblems(pool, [writer.id])
                return marks == nil && problems.isEmpty
            }
            #expect(cluster.bookies.contains { $0.stderr.contains("audit found entries missing on a bookie") })
        }
    }

    @Test(arguments: ["metadata role", "3-member etcd"])
    func aLostBookieHealsLogsWrittenThroughAProxy(_ metadata: String) async throws {
        // Proves healing end to end on both metadata backends: logs written through a proxy (E3/Qw3/Qa2, segments
        // rolling every second), then one of 5 bookies SIGKILLed and its data deleted while writes go on; with
        // etcd, one of its 3 members is SIGKILLed during the re-replication too. Every ledger ends with all its
        // copies (asked of each bookie directly), none names the dead bookie, and every acknowledged record reads
        // back at its DLSN.
        let etcd = metadata == "3-member etcd" ? try await EtcdTrio.start() : nil
        defer { etcd?.stop() }
        try await withProcessCluster(bookies: 5, bookieSettings: fastHealing, metadataURI: etcd?.uri) { cluster in
            let config = cluster.dir.sub("proxy.conf")
            try "metadata = \(cluster.uri)\nensemble = 3\nwrite_quorum = 3\nack_quorum = 2\nsegment_age_s = 1\n"
                .write(toFile: config, atomically: true, encoding: .utf8)
            let proxy = try await DaemonProcess.start(["--config", config], role: "proxy")
            defer { proxy.kill(SIGKILL) }
            let client = ProxyClient(proxies: ["127.0.0.1:\(proxy.port)"])
            let streams = ["heal-a", "heal-b", "heal-c"]
            for stream in streams { try await client.create(stream) }
            let acked = AckedByStream()
            let stop = StopFlag()
            let writers = streams.map { stream in
                Task {
                    var n = 0
                    while !stop.isSet {
                        let payload = Array("\(stream) record \(n)".utf8)
                        n += 1
                        do {
                            acked.add(stream, try await client.write(stream, payload), payload)
                        } catch {
                            // Unacknowledged (a metadata member died, a segment was fenced): as an application
                            // would, try the next record a little later. Only acknowledged records are checked.
                            try await Task.sleep(for: .milliseconds(50))
                        }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
            try await Task.sleep(for: .seconds(3))
            let (pool, store) = try cluster.client()
            let meta = Cluster(store: store)
            var named: [BookieID: Int] = [:]
            try await meta.forEachLedger { _, ledger, _ in
                for bookie in Set(ledger.fragments.flatMap(\.bookies)) { named[bookie, default: 0] += 1 }
            }
            let victim = try #require(named.max { $0.value < $1.value }?.key)
            await cluster.killBookie(cluster.index(of: victim), wipe: true)
            if let etcd {
                try await eventually("\(victim) is declared lost") { try await meta.lostBookies()[victim] != nil }
                etcd.kill(0)
            }
            do {
                try await eventually("no ledger names \(victim) and no marks are left", timeout: .seconds(120), cluster: cluster) {
                    let left = try await ledgersNaming(victim, meta)
                    let marked = try await markedLedgers(meta)
                    return left == 0 && marked.isEmpty
                }
            } catch {
                let status = try? await runTool(dlogctlPath, ["recovery", "status", "--metadata", cluster.uri])
                let locks = try? await store.list(prefix: RecoveryKeys.locks).items.map { "\($0.key) \(String(decoding: $0.value, as: UTF8.self))" }
                Issue.record("\(status?.stdout ?? "-")\nlocks: \(locks ?? [])")
                throw error
            }
            stop.set()
            for writer in writers { try await writer.value }
            // One more acknowledged record per stream: a stream whose writer failed meanwhile (a metadata member
            // died under its ensemble change) is opened again, which recovers its last segment, so every earlier
            // acknowledged record is readable, as after any writer failure.
            for stream in streams {
                let payload = Array("\(stream) last".utf8)
                try await eventually("\(stream) takes a last record") {
                    acked.add(stream, try await client.write(stream, payload), payload)
                    return true
                }
            }
            let ids = Array(try await meta.ledgerIDs())
            #expect(ids.count >= 6, "segments rolled into several ledgers")
            let problems = try await replicationProblems(pool, ids)
            #expect(problems.isEmpty, "\(problems)")
            var options = LogOptions()
            options.readPollTimeout = .milliseconds(300)
            let namespace = Namespace(pool: pool, options: options)
            for stream in streams {
                let confirmed = acked.of(stream)
                try #require(!confirmed.isEmpty)
                let reader = try await namespace.openReader(stream)
                var seen: [DLSN: [UInt8]] = [:]
                let until = ContinuousClock.now + .seconds(30)
                while seen[confirmed.last!.0] == nil && ContinuousClock.now < until {
                    for record in try await reader.readBulk(max: 1000, wait: .milliseconds(300)) { seen[record.dlsn] = record.payload }
                }
                let missing = confirmed.filter { seen[$0.0] != $0.1 }.map(\.0)
                if !missing.isEmpty {
                    let shown = try await runTool(dlogctlPath, ["log", "show", stream, "--metadata", cluster.uri])
                    let lastRead = seen.keys.max().map { "\($0)" } ?? "-"
                    let proxyLog = proxy.stderr.split(separator: "\n").suffix(30).joined(separator: "\n")
                    Issue.record("\(stream): \(missing.count) of \(confirmed.count) acknowledged records not read back: \(missing.prefix(10)); read \(seen.count), last read \(lastRead)\n\(shown.stdout)\(shown.stderr)\nproxy:\n\(proxyLog)")
                }
            }
            await client.shutdown()
        }
    }
}

/// Live bookies that metadata names for entries they do not hold (asked with LIST_ENTRIES). Dead bookies are
/// left out: they are named until replaced, which is what healing is for.
func namedBookiesLackingCopies(_ pool: BookiePool, _ ids: [LedgerID], dead: Set<BookieID>) async throws -> [String] {
    var problems: [String] = []
    for id in ids {
        let read: (metadata: LedgerMetadata, version: Version)?
        do {
            read = try await pool.cluster.ledger(id)
        } catch let error as ClusterError {
            // Metadata that fails its checks (a fragment naming one bookie twice, say) is a finding, not a retry.
            problems.append("ledger \(id): \(error)")
            continue
        }
        guard let metadata = read?.metadata, let quorums = Quorums(metadata) else { continue }
        for bookie in Set(metadata.fragments.flatMap(\.bookies)).subtracting(dead) {
            let stored = try await pool.client(for: bookie, lane: id.rawValue).storedEntries(of: id)
            for e in 0...max(0, metadata.lastEntry.rawValue) where metadata.lastEntry.rawValue >= 0 {
                let fragment = metadata.fragment(for: EntryID(e))
                guard let position = fragment.bookies.firstIndex(of: bookie),
                      quorums.writeSet(of: EntryID(e)).contains(position) else { continue }
                if !stored.contains(where: { $0.first.rawValue <= e && e <= $0.last.rawValue }) {
                    problems.append("ledger \(id) names \(bookie) for entry \(e), which it does not hold")
                    break
                }
            }
        }
    }
    return problems
}

/// Acknowledged records per stream, gathered from several writer tasks.
final class AckedByStream: Sendable {
    private let records = Mutex<[String: [(DLSN, [UInt8])]]>([:])
    func add(_ stream: String, _ dlsn: DLSN, _ payload: [UInt8]) { records.withLock { $0[stream, default: []].append((dlsn, payload)) } }
    func of(_ stream: String) -> [(DLSN, [UInt8])] { records.withLock { $0[stream] ?? [] } }
}
