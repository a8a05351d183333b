import ArgumentParser
import DLogCLI
import DLogLedger
import DLogWire
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Synchronization

/// Closed-loop adds to fresh ledgers on one bookie: each of N connections keeps P adds in flight.
struct BookieCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bookie",
        abstract: "Closed-loop adds against one bookie; prints throughput, latency and fsync batching.")

    @Option(help: "Bookie address HOST:PORT.") var target: String
    @Option(help: "Connections.") var clients = 1
    @Option(help: "Adds in flight per connection.") var pipeline = 1
    @Option(help: "Payload bytes per entry.") var size = 1024
    @Option(help: "Seconds to run.") var duration = 5.0
    @Flag(help: "Print one JSON object.") var json = false
    @Option(name: .customLong("acked-log"), help: "Append every acknowledged (ledger, entry, crc) to this file.")
    var ackedLog: String?
    @Option(help: "add, or read-lac: a request that touches no disk (the network and event-loop floor of an add).")
    var op = "add"
    @OptionGroup var tls: TLSClientOptions

    struct Parameters: Encodable {
        var target: String
        var clients: Int
        var pipeline: Int
        var size: Int
    }

    /// One chain of adds (or READ_LACs) on one ledger: it ends at the deadline or at its first failure. What
    /// does not change from one add to the next lives here, so each add's callback holds one reference, not
    /// one per value: the client shares the machine's cores with the bookie it measures.
    final class Lane: Sendable {
        let client: BookieClient
        let key: MasterKey
        let ledger: LedgerID
        let payload: [UInt8]
        let deadline: ContinuousClock.Instant
        let tally: WriteTally
        let readLAC: Bool
        /// The tally's shard: the connection's, so lanes on one event loop share a lock no other thread takes.
        let shard: Int
        let done: EventLoopPromise<Void>

        init(client: BookieClient, key: MasterKey, ledger: LedgerID, payload: [UInt8],
             deadline: ContinuousClock.Instant, tally: WriteTally, readLAC: Bool, shard: Int) {
            self.client = client
            self.key = key
            self.ledger = ledger
            self.payload = payload
            self.deadline = deadline
            self.tally = tally
            self.readLAC = readLAC
            self.shard = shard
            done = client.channel.eventLoop.makePromise()
        }

        /// Sends entry `entry`; its answer records the latency and sends the next until the deadline. `sent` is
        /// when the previous answer came (the next add leaves at once): one clock read per add, not two.
        func step(entry: Int64, sent: ContinuousClock.Instant = .now) {
            let header = EntryHeader(ledger: ledger, entry: EntryID(entry), lastAddConfirmed: EntryID(entry - 1),
                                     ledgerLength: UInt64(entry + 1) * UInt64(payload.count))
            let bytes = EntryCodec.encode(header, payload: payload)
            let crc = bytes.withUnsafeBytes { $0.loadBigEndian(UInt32.self, at: 32) }
            let request: BookieRequest = readLAC ? .readLAC(ledger: ledger, longPoll: nil)
                : .add(masterKey: key, entry: bytes, recovery: false)
            client.send(request) { [self] result in
                let now = ContinuousClock.now
                // An add must be acknowledged; a READ_LAC of a ledger never written is answered NO_LEDGER, which
                // is fine for measuring the round trip.
                let ok: Bool
                switch result {
                case .success(.added): ok = !readLAC
                case .success(.lac), .success(.failed(.noLedger, _)): ok = readLAC
                default: ok = false
                }
                if ok {
                    let line = tally.keepsAcked ? "\(ledger.rawValue) \(entry) \(crc)" : nil
                    tally.confirmed(latency: now - sent, ackedLine: line, shard: shard)
                } else {
                    tally.failed(BenchError("\(ledger)/\(entry): \(result)"), shard: shard)
                }
                if ok, now < deadline {
                    step(entry: entry + 1, sent: now)
                } else {
                    done.succeed(())
                }
            }
        }
    }

    func validate() throws {
        guard (1...4096).contains(clients) else { throw ValidationError("--clients must be 1...4096") }
        guard (1...1024).contains(pipeline) else { throw ValidationError("--pipeline must be 1...1024") }
        guard (0...(4 << 20)).contains(size) else { throw ValidationError("--size must be 0...4M") }
        guard duration > 0 && duration <= 3600 else { throw ValidationError("--duration must be 0...3600") }
        guard op == "add" || op == "read-lac" else { throw ValidationError("--op must be add or read-lac") }
        guard op == "add" || ackedLog == nil else { throw ValidationError("--acked-log needs --op add") }
    }

    func run() async throws {
        let (host, port) = try parseTarget(target)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var connections: [BookieClient] = []
        let identity = try tls.identity()
        for _ in 0..<clients {
            connections.append(try await BookieClient.connect(host: host, port: port, group: group, tls: identity))
        }
        let before = try await JournalCounters(json: connections[0].info())
        let key = MasterKey(password: "dlog-bench")
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let base = UInt64(Date().timeIntervalSince1970 * 1000) << 16  // fresh ledgers every run
        // Acknowledged adds reach the acked log as they come (every 100 ms), so a bookie killed mid-run
        // leaves a record of what it acknowledged for `dlog-bench verify`.
        let tally = WriteTally(ackedLog: ackedLog, shards: connections.count)
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(duration * 1000))
        var lanes: [Lane] = []
        for (c, client) in connections.enumerated() {
            for p in 0..<pipeline {
                let lane = Lane(client: client, key: key, ledger: LedgerID(base + UInt64(c * pipeline + p)),
                                payload: payload, deadline: deadline, tally: tally, readLAC: op == "read-lac",
                                shard: c)
                lanes.append(lane)
                lane.step(entry: 0)
            }
        }
        for lane in lanes { try await lane.done.futureResult.get() }
        let elapsed = Double(micros(ContinuousClock.now - start)) / 1e6
        // The acked lines are written before the final GET_INFO, which a dead bookie cannot answer.
        let counts = try await tally.finish()
        let after: JournalCounters
        do {
            after = try await JournalCounters(json: connections[0].info())
        } catch {
            for c in connections { await c.close() }
            try await group.shutdownGracefully()
            throw BenchError("\(counts.ops) adds acknowledged, \(counts.errorsLine); then GET_INFO failed: \(error)")
        }
        for c in connections { await c.close() }
        try await group.shutdownGracefully()
        let histogram = counts.histogram, ops = counts.ops, errors = counts.errors, firstError = counts.firstError
        let sync = SyncFigures(syncs: Double(after.syncs &- before.syncs), records: Double(after.records &- before.records),
                               seconds: elapsed, engines: [after.engine], modes: [after.syncMode])
        let result = RunReport(parameters: Parameters(target: target, clients: clients, pipeline: pipeline, size: size),
                               figures: RunFigures(histogram, ops: ops, errors: errors, bytesPerOp: size, seconds: elapsed),
                               extra: sync)
        if json {
            printJSON(result)
        } else {
            print("bookie \(target) \(clients)x\(pipeline) \(size) B: \(result.figures.line("adds")); \(sync.line) "
                  + "(\(after.engine), \(after.syncMode))")
        }
        if errors > 0 {
            FileHandle.standardError.write(Data("dlog-bench: \(errors) adds failed; first: \(firstError ?? "?")\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// The journal counters dlog-bench reads from GET_INFO.
struct JournalCounters {
    var syncs: UInt64 = 0
    var records: UInt64 = 0
    var engine = ""
    var syncMode = ""

    init(json: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let journals = object["journals"] as? [[String: Any]] else {
            throw BenchError("GET_INFO answered something that is not the expected JSON: \(json.prefix(200))")
        }
        for j in journals {
            syncs += (j["syncs"] as? NSNumber)?.uint64Value ?? 0
            records += (j["recordsSynced"] as? NSNumber)?.uint64Value ?? 0
            engine = j["engine"] as? String ?? engine
            syncMode = j["syncMode"] as? String ?? syncMode
        }
    }
}
