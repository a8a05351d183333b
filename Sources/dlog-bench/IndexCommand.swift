import ArgumentParser
import DLogLedger
import DLogWire
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// The ledger index at scale, against one bookie: one entry each to N fresh ledgers, then rounds that each add
/// one entry to K of them and time the checkpoint that records them (from GET_INFO's `lastCheckpoint`). With
/// `--probe` it only waits for the bookie to answer and prints when, for timing restarts
/// (scripts/bench-index.sh).
struct IndexCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "index",
        abstract: "Fill a bookie with many ledgers, then time checkpoints that change a few of them.")

    @Option(help: "Bookie address HOST:PORT.") var target: String
    @Option(help: "Ledgers to create, one entry each.") var ledgers = 1_000_000
    @Option(help: "Ledgers each round adds an entry to.") var changed = 1_000
    @Option(help: "Rounds of changes, each timed by its checkpoint.") var rounds = 10
    @Option(help: "Payload bytes per entry.") var size = 100
    @Option(help: "Connections for the fill.") var clients = 8
    @Option(help: "Adds in flight per connection during the fill.") var pipeline = 128
    @Flag(help: "Only wait (up to 300 s) until the bookie answers GET_INFO; print the Unix time it did and its ledger count.")
    var probe = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard (1...100_000_000).contains(ledgers) else { throw ValidationError("--ledgers must be 1...100000000") }
        guard (1...ledgers).contains(changed) else { throw ValidationError("--changed must be 1...--ledgers") }
        guard (0...1_000).contains(rounds) else { throw ValidationError("--rounds must be 0...1000") }
        guard (0...(1 << 20)).contains(size) else { throw ValidationError("--size must be 0...1M") }
        guard (1...256).contains(clients), (1...4096).contains(pipeline) else {
            throw ValidationError("--clients must be 1...256 and --pipeline 1...4096")
        }
    }

    struct Round: Encodable {
        var checkpoint_ms: Double
        var index_bytes: Int
        var snapshot: Bool
    }

    struct Report: Encodable {
        var target: String
        var ledgers: Int
        var changed: Int
        var size: Int
        var fill_s: Double
        var fill_adds_per_sec: Double
        var bookie_ledgers: Int
        /// The checkpoint that followed the fill (it may have been a snapshot of everything).
        var after_fill: Round?
        var rounds: [Round]
        /// Over the rounds whose checkpoint wrote a delta.
        var delta_checkpoint_p50_ms: Double?
        var delta_checkpoint_max_ms: Double?
        var delta_index_bytes_p50: Int?
    }

    func run() async throws {
        let (host, port) = try parseTarget(target)
        if probe { return try await waitForBookie(host: host, port: port) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var connections: [BookieClient] = []
        for _ in 0..<clients { connections.append(try await BookieClient.connect(host: host, port: port, group: group)) }
        let key = MasterKey(password: "dlog-bench")
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let base = UInt64(Date().timeIntervalSince1970 * 1000) << 24  // fresh ledgers every run
        let progress = FillProgress()

        // Fill: every lane takes the next ledger until all have entry 0.
        let started = ContinuousClock.now
        var lanes: [EventLoopFuture<Void>] = []
        for client in connections {
            for _ in 0..<pipeline {
                let done = client.channel.eventLoop.makePromise(of: Void.self)
                Self.fill(client: client, done: done, progress: progress, count: ledgers, base: base, key: key,
                          payload: payload)
                lanes.append(done.futureResult)
            }
        }
        for lane in lanes { try await lane.get() }
        let fillSeconds = seconds(ContinuousClock.now - started)
        if let failed = progress.failure.withLock({ $0 }) { throw BenchError("fill failed: \(failed)") }
        let afterFill = try await waitForCheckpoint(connections[0])

        // Rounds: entry 1 to `changed` ledgers spread over all of them, a different set each round.
        var results: [Round] = []
        for round in 0..<rounds {
            let stride = max(1, ledgers / changed)
            let chosen = (0..<changed).map { base + UInt64(($0 * stride + round) % ledgers) }
            var adds: [EventLoopFuture<BookieResponse>] = []
            for (i, ledger) in chosen.enumerated() {
                adds.append(connections[i % clients].sendFuture(.add(masterKey: key, entry: Self.entry(ledger, 1 + UInt64(round / stride), payload),
                                                                      recovery: false)))
            }
            for add in adds {
                guard case .added = try await add.get() else { throw BenchError("a round's add failed: \(try await add.get())") }
            }
            if let timing = try await waitForCheckpoint(connections[0]) { results.append(timing) }
        }
        let info = try await Self.info(connections[0])
        for c in connections { await c.close() }
        try await group.shutdownGracefully()

        let deltas = results.filter { !$0.snapshot }
        let sortedMs = deltas.map(\.checkpoint_ms).sorted()
        let sortedBytes = deltas.map(\.index_bytes).sorted()
        let report = Report(target: target, ledgers: ledgers, changed: changed, size: size, fill_s: fillSeconds,
                            fill_adds_per_sec: (Double(ledgers) / fillSeconds).rounded(),
                            bookie_ledgers: info["ledgers"] as? Int ?? -1, after_fill: afterFill, rounds: results,
                            delta_checkpoint_p50_ms: sortedMs.isEmpty ? nil : sortedMs[sortedMs.count / 2],
                            delta_checkpoint_max_ms: sortedMs.last,
                            delta_index_bytes_p50: sortedBytes.isEmpty ? nil : sortedBytes[sortedBytes.count / 2])
        if json {
            printJSON(report)
        } else {
            print("index \(target): \(ledgers) ledgers filled in \(fmt(fillSeconds)) s "
                  + "(\(Int(report.fill_adds_per_sec)) adds/s); bookie holds \(report.bookie_ledgers)")
            if let a = afterFill { print("checkpoint after the fill: \(fmt(a.checkpoint_ms, 1)) ms, \(a.index_bytes) B, snapshot \(a.snapshot)") }
            for (i, r) in results.enumerated() {
                print("round \(i + 1): \(changed) ledgers changed, checkpoint \(fmt(r.checkpoint_ms, 1)) ms, index +\(r.index_bytes) B"
                      + (r.snapshot ? " (snapshot)" : ""))
            }
            if let p50 = report.delta_checkpoint_p50_ms, let max = report.delta_checkpoint_max_ms {
                print("delta checkpoints: p50 \(fmt(p50, 1)) ms, max \(fmt(max, 1)) ms")
            }
        }
    }

    static func entry(_ ledger: UInt64, _ e: UInt64, _ payload: [UInt8]) -> [UInt8] {
        EntryCodec.encode(EntryHeader(ledger: LedgerID(ledger), entry: EntryID(Int64(e)), lastAddConfirmed: EntryID(Int64(e) - 1),
                                      ledgerLength: (e + 1) * UInt64(payload.count)), payload: payload)
    }

    /// One lane of the fill: adds entry 0 of the next ledger, then the next, until all are taken.
    static func fill(client: BookieClient, done: EventLoopPromise<Void>, progress: FillProgress, count: Int, base: UInt64,
                     key: MasterKey, payload: [UInt8]) {
        let i = progress.next.wrappingAdd(1, ordering: .relaxed).oldValue
        guard i < count, progress.failure.withLock({ $0 }) == nil else { return done.succeed(()) }
        client.sendFuture(.add(masterKey: key, entry: entry(base + UInt64(i), 0, payload), recovery: false)).whenComplete { result in
            guard case .success(.added) = result else {
                progress.failure.withLock { failed in failed = failed ?? "ledger \(base + UInt64(i)): \(result)" }
                return done.succeed(())
            }
            fill(client: client, done: done, progress: progress, count: count, base: base, key: key, payload: payload)
        }
    }

    /// The fill's shared state: the next ledger to take, and the first failure.
    final class FillProgress: Sendable {
        let next = Atomic<Int>(0)
        let failure = Mutex<String?>(nil)
    }

    static func info(_ client: BookieClient) async throws -> [String: Any] {
        let text = try await client.info()
        guard let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw BenchError("GET_INFO answered something that is not JSON: \(text.prefix(200))")
        }
        return o
    }

    /// Waits until two more checkpoints have run (the second began after everything sent so far was
    /// applied), then returns the last one that wrote something.
    func waitForCheckpoint(_ client: BookieClient) async throws -> Round? {
        let first = try await Self.info(client)["checkpoints"] as? Int ?? 0
        let deadline = ContinuousClock.now + .seconds(600)
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            let o = try await Self.info(client)
            if let error = o["lastCheckpointError"] as? String { throw BenchError("checkpoint failed: \(error)") }
            guard (o["checkpoints"] as? Int ?? 0) >= first + 2 else { continue }
            guard let last = o["lastCheckpoint"] as? [String: Any] else { return nil }
            return Round(checkpoint_ms: ((last["seconds"] as? Double ?? 0) * 1e6).rounded() / 1e3,
                         index_bytes: last["indexBytes"] as? Int ?? 0, snapshot: last["indexSnapshot"] as? Bool ?? false)
        }
        throw BenchError("no checkpoint within 600 s")
    }

    /// `--probe`: connects every 2 ms until GET_INFO answers.
    func waitForBookie(host: String, port: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while ContinuousClock.now < deadline {
            if let client = try? await BookieClient.connect(host: host, port: port) {
                if let o = try? await Self.info(client) {
                    let now = Date().timeIntervalSince1970
                    await client.close()
                    print(String(format: "%.3f %d", now, o["ledgers"] as? Int ?? -1))
                    return
                }
                await client.close()
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw BenchError("\(target) did not answer within 300 s")
    }

    func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}
