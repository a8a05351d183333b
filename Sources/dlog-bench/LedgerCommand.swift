import ArgumentParser
import DLogCLI
import DLogLedger
import DLogMetadata
import DLogWire
import Foundation

/// Closed-loop replicated adds: N writers, each its own ledger, each keeping P adds in flight, through the
/// quorum client (placement from the registry, Qa acks in order, ensemble changes).
struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ledger",
        abstract: "Closed-loop replicated adds through the ledger client; prints throughput and latency.")

    @Option(help: "Metadata store: dlog://HOST:PORT or etcd://HOST:PORT[/prefix].") var metadata: String
    @Option(help: "Bookies per ledger (E).") var ensemble = 3
    @Option(name: .customLong("write-quorum"), help: "Copies of each entry (Qw).") var writeQuorum = 3
    @Option(name: .customLong("ack-quorum"), help: "Acknowledgements that confirm an entry (Qa).") var ackQuorum = 2
    @Option(help: "Writers, each with its own ledger.") var clients = 1
    @Option(help: "Adds in flight per writer.") var pipeline = 1
    @Option(help: "Payload bytes per entry.") var size = 1024
    @Option(help: "Seconds to run.") var duration = 5.0
    @Option(help: "Pipelined connections to each bookie (1...64).") var connections = 1
    @OptionGroup var tls: TLSClientOptions
    @Flag(name: .customLong("rack-aware"), help: "Spread each write set over the bookies' racks.") var rackAware = false
    @Flag(help: "Print one JSON object.") var json = false
    @Option(name: .customLong("acked-log"), help: "Append every confirmed (ledger, entry, payload CRC32C) to this file.")
    var ackedLog: String?

    struct Parameters: Encodable {
        var target: String
        var ensemble: Int
        var write_quorum: Int
        var ack_quorum: Int
        var clients: Int
        var pipeline: Int
        var size: Int
    }

    func validate() throws {
        do { _ = try MetadataURI(parsing: metadata) } catch { throw ValidationError("--metadata: \(error)") }
        guard Quorums(ensembleSize: ensemble, writeQuorum: writeQuorum, ackQuorum: ackQuorum) != nil else {
            throw ValidationError("quorums must satisfy ensemble ≥ write-quorum ≥ ack-quorum ≥ 1 (and ensemble ≤ 64)")
        }
        guard (1...1024).contains(clients) else { throw ValidationError("--clients must be 1...1024") }
        guard (1...1024).contains(pipeline) else { throw ValidationError("--pipeline must be 1...1024") }
        guard (0...(1 << 20)).contains(size) else { throw ValidationError("--size must be 0...1M") }
        guard duration > 0 && duration <= 3600 else { throw ValidationError("--duration must be 0...3600") }
        guard (1...64).contains(connections) else { throw ValidationError("--connections must be 1...64") }
    }

    func run() async throws {
        let identity = try tls.identity()
        let store = try MetadataURI.connect(metadata, tls: identity)
        let cluster = Cluster(store: store)
        var options = BookiePool.Options()
        options.connectionsPerBookie = connections
        options.tls = identity
        let pool = BookiePool(cluster: cluster, options: options)
        let placement = EnsemblePlacement(policy: rackAware ? .rackAware : .random)
        let allocator = LedgerIDAllocator(cluster: cluster)
        let quorums = Quorums(ensembleSize: ensemble, writeQuorum: writeQuorum, ackQuorum: ackQuorum)!
        var writers: [LedgerWriter] = []
        var rng = SystemRandomNumberGenerator()
        do {
            for _ in 0..<clients {
                writers.append(try await LedgerWriter.create(quorums: quorums, password: "dlog-bench", pool: pool,
                                                             allocator: allocator, placement: placement, using: &rng))
            }
        } catch {
            await pool.shutdown()
            await store.shutdown()
            throw BenchError("creating ledgers: \(error)")
        }
        let before = await Self.journalCounters(pool)
        let tally = WriteTally(ackedLog: ackedLog)
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(duration * 1000))
        await withTaskGroup(of: Void.self) { group in
            for (index, writer) in writers.enumerated() {
                for lane in 0..<pipeline {
                    group.addTask {
                        await Self.addLoop(writer, lane: UInt64(index * 1024 + lane), size: size, until: deadline,
                                           tally: tally)
                    }
                }
            }
        }
        let elapsed = Double(micros(ContinuousClock.now - start)) / 1e6
        let after = await Self.journalCounters(pool)
        for writer in writers { _ = try? await writer.close() }
        await pool.shutdown()
        await store.shutdown()
        try report(try await tally.finish(), elapsed: elapsed, journals: (before, after))
    }

    /// One lane: adds one at a time until the deadline; a failed add ends the lane (its writer is done).
    static func addLoop(_ writer: LedgerWriter, lane: UInt64, size: Int, until deadline: ContinuousClock.Instant,
                        tally: WriteTally) async {
        var payload = (0..<max(size, 16)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        if size < 16 { payload.removeLast(16 - size) }
        var sequence: UInt64 = 0
        while ContinuousClock.now < deadline {
            sequence += 1
            // Stamp lane and sequence into the payload so each confirmed entry has its own CRC to verify.
            if size >= 16 {
                withUnsafeBytes(of: lane.bigEndian) { payload.replaceSubrange(0..<8, with: $0) }
                withUnsafeBytes(of: sequence.bigEndian) { payload.replaceSubrange(8..<16, with: $0) }
            }
            let sent = ContinuousClock.now
            do {
                let entry = try await writer.append(payload)
                tally.confirmed(latency: ContinuousClock.now - sent, ackedLine: tally.keepsAcked
                    ? "L\(writer.id.rawValue) \(entry.rawValue) \(hex8(CRC32C.checksum(payload)))" : nil)
            } catch {
                tally.failed(error)
                return
            }
        }
    }

    /// Each registered bookie's journal counters (GET_INFO); a bookie that does not answer is left out.
    static func journalCounters(_ pool: BookiePool) async -> [BookieID: JournalCounters] {
        var counters: [BookieID: JournalCounters] = [:]
        for bookie in (try? await pool.registered()) ?? [] {
            if case .info(let json)? = try? await pool.send(.getInfo, to: bookie.id, timeout: .seconds(5)),
               let parsed = try? JournalCounters(json: json) {
                counters[bookie.id] = parsed
            }
        }
        return counters
    }

    func report(_ counts: WriteTally.Counts, elapsed: Double,
                journals: (before: [BookieID: JournalCounters], after: [BookieID: JournalCounters])) throws {
        var syncs = 0.0, records = 0.0
        var engines: Set<String> = [], modes: Set<String> = []
        for (bookie, after) in journals.after {
            guard let before = journals.before[bookie] else { continue }
            syncs += Double(after.syncs &- before.syncs)
            records += Double(after.records &- before.records)
            engines.insert(after.engine)
            modes.insert(after.syncMode)
        }
        // Journal figures summed over every registered bookie (each add is synced by Qw of them).
        let sync = SyncFigures(syncs: syncs, records: records, seconds: elapsed, engines: engines, modes: modes)
        let result = RunReport(parameters: Parameters(target: metadata, ensemble: ensemble, write_quorum: writeQuorum,
                                                      ack_quorum: ackQuorum, clients: clients, pipeline: pipeline, size: size),
                               figures: RunFigures(counts.histogram, ops: counts.ops, errors: counts.errors, bytesPerOp: size,
                                                   seconds: elapsed),
                               extra: sync)
        if json {
            printJSON(result)
        } else {
            print("ledger E=\(ensemble) Qw=\(writeQuorum) Qa=\(ackQuorum) \(clients)x\(pipeline) \(size) B: "
                  + "\(result.figures.line("adds")); \(sync.line) over \(journals.after.count) bookies "
                  + "(\(sync.engine), \(sync.sync_mode)); "
                  + counts.errorsLine)
        }
        if counts.errors > 0 { throw ExitCode(1) }
    }
}
