import DLogTestSupport
import DLogIO
import DLogLedger
import DLogWire
import Foundation
import NIOCore
import Synchronization
import Testing

/// Acknowledged (ledger, entry) pairs, recorded by the writers.
final class Acked: Sendable {
    let entries = Mutex<[UInt64: Int64]>([:])  // ledger → highest entry acked (entries are acked in order)
    func record(_ ledger: UInt64, _ e: Int64) { entries.withLock { $0[ledger] = max($0[ledger] ?? -1, e) } }
    var snapshot: [UInt64: Int64] { entries.withLock { $0 } }
    /// How many entries are acknowledged in all.
    var total: Int { entries.withLock { $0.values.reduce(0) { $0 + Int($1) + 1 } } }
}

@Suite(.serialized) struct CrashTests {
    /// The journal engines this machine has, with the kill cycles each gets: the default engine the most.
    static let engines: [(engine: String, cycles: Int)] = [("blocking", 8)]
        + (URingEngine.probe() == nil ? [("io_uring", 20)] : []) + (AIOEngine.probe() == nil ? [("libaio", 8)] : [])

    /// Adds each cycle must see acknowledged before its kill.
    static let loadPerCycle = 32

    /// Kill -9 under concurrent adds, over and over, on each journal engine: after every restart each
    /// acknowledged entry reads back byte-exact, and fenced ledgers stay fenced. Small journal files and a
    /// short checkpoint interval make the kills land during rolls, recycling and checkpoints too.
    @Test(arguments: engines)
    func sigkillUnderLoad(engine: String, cycles: Int) async throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("CrashTests seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        let dir = TempDir()
        let conf = dir.sub("bookie.conf")
        try """
            journal_dirs = \(dir.sub("journal"))
            ledger_dirs = \(dir.sub("ledgers"))
            journal_file_bytes = 2M
            max_frame_bytes = 256K
            journal_files_max = 4
            write_cache_bytes = 2M
            checkpoint_interval_ms = 150
            allow_shared_device = true
            journal_engine = \(engine)
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        let acked = Acked()
        var fenced: [UInt64] = []
        for cycle in 0..<cycles {
            let d = try await DaemonProcess.start(["--config", conf])
            let clients = try await (0..<4).asyncMap { _ in try await d.client() }
            // 1. Everything acknowledged before still reads back; fenced ledgers still refuse normal adds.
            try await verify(acked.snapshot, with: clients[0], cycle: cycle)
            for ledger in fenced {
                let r = try await clients[0].send(.add(masterKey: testKey, entry: entry(ledger, 1_000_000), recovery: false))
                #expect(r == .failed(.fenced, message: "L\(ledger) is fenced"), "cycle \(cycle) ledger \(ledger)")
            }
            // 2. Fence one ledger from the previous cycle (durable before the answer).
            if let victim = acked.snapshot.keys.filter({ !fenced.contains($0) }).max() {
                _ = try await clients[1].read(ledger: LedgerID(victim), entry: .none, fenceWith: testKey)
                fenced.append(victim)
            }
            // 3. Concurrent adds to fresh ledgers, then SIGKILL at a random moment.
            let stop = StopFlag()
            let writers = clients.enumerated().map { (i, c) in
                Task { await Self.write(c, ledger: UInt64(cycle * 16 + i * 4 + 1), acked: acked, stop: stop) }
            }
            // The kill must land under load, whatever the machine's speed: wait (bounded) until this cycle's
            // writers have had some adds acknowledged, then a random moment more.
            let before = acked.total
            let loaded = ContinuousClock.now + .seconds(30)
            while acked.total < before + Self.loadPerCycle, ContinuousClock.now < loaded {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(acked.total >= before + Self.loadPerCycle, "cycle \(cycle): the load never got going")
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...350, using: &rng)))
            d.kill(SIGKILL)
            stop.set()
            for w in writers { await w.value }
            _ = await d.exited()
            for c in clients { await c.close() }
        }
        // A last start checks the final cycle too.
        let d = try await DaemonProcess.start(["--config", conf])
        let c = try await d.client()
        try await verify(acked.snapshot, with: c, cycle: cycles)
        let engineUsed = try #require(try JSONSerialization.jsonObject(with: Data(await c.info().utf8)) as? [String: Any])
        #expect(((engineUsed["journals"] as? [[String: Any]])?.first?["engine"] as? String) == engine, "\(engineUsed)")
        await c.close()
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)
    }

    /// Four ledgers per writer, 8 adds in flight, until told to stop or the connection dies.
    static func write(_ c: BookieClient, ledger base: UInt64, acked: Acked, stop: StopFlag) async {
        var next: [Int64] = [0, 0, 0, 0]
        var inFlight: [(UInt64, Int64, EventLoopFuture<BookieResponse>)] = []
        while !stop.isSet {
            while inFlight.count < 8 {
                let k = inFlight.count % 4
                let l = base + UInt64(k)
                inFlight.append((l, next[k], c.sendFuture(.add(masterKey: testKey, entry: entry(l, next[k]), recovery: false))))
                next[k] += 1
            }
            let (l, e, f) = inFlight.removeFirst()
            guard let r = try? await f.get() else { return }
            if case .added = r { acked.record(l, e) } else { return }
        }
    }

    func verify(_ expected: [UInt64: Int64], with c: BookieClient, cycle: Int) async throws {
        var pending: [(UInt64, Int64, EventLoopFuture<BookieResponse>)] = []
        func check(_ item: (UInt64, Int64, EventLoopFuture<BookieResponse>)) async throws {
            let r = try await item.2.get()
            #expect(r == .entry(entry(item.0, item.1)), "cycle \(cycle): L\(item.0)/E\(item.1) after restart: \(r)")
        }
        for (ledger, last) in expected.sorted(by: { $0.key < $1.key }) where last >= 0 {
            for e in 0...last {
                pending.append((ledger, e, c.sendFuture(.read(ledger: LedgerID(ledger), entry: EntryID(e), fenceWith: nil))))
                if pending.count >= 256 { try await check(pending.removeFirst()) }
            }
        }
        for p in pending { try await check(p) }
    }
}

final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

extension Sequence {
    func asyncMap<T>(_ body: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await body(e)) }
        return out
    }
}

