import ArgumentParser
import DLogCLI
import DistributedLog
import DLogLedger
import DLogMetadata
import DLogWire
import Foundation
import Synchronization

/// Closed-loop writes to logs, end to end: through a proxy (`--proxy`) or directly with the core library (one
/// writer per stream), with a tailing reader per stream measuring how long after its acknowledgement each
/// record reaches a reader.
struct LogBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log",
        abstract: "Closed-loop writes to logs (through a proxy, or directly) with tailing readers; prints throughput, latency and tail latency.")

    @Option(help: "Write through these proxies, HOST:PORT[,HOST:PORT…], failing over between them (default: directly, with one writer per stream).")
    var proxy: String?
    @Option(help: "Metadata store (readers, and direct writes): dlog://HOST:PORT or etcd://HOST:PORT[/prefix].")
    var metadata = "dlog://127.0.0.1:3180"
    @Option(help: "Streams (logs) written, each new for the run.") var streams = 1
    @OptionGroup var tls: TLSClientOptions
    @Option(help: "Writers, spread over the streams.") var clients = 1
    @Option(help: "Writes in flight per writer.") var pipeline = 1
    @Option(help: "Payload bytes per record.") var size = 1024
    @Option(help: "Seconds to run.") var duration = 5.0
    @Option(name: .customLong("entries-in-flight"), help: "Direct writes: entries in flight per stream's writer (records gather behind them).")
    var entriesInFlight = LogOptions().entriesInFlightMax
    @Flag(inversion: .prefixedNo, help: "Run a tailing reader per stream and measure acknowledgement to delivery (--no-tail: writes alone, as a store's own write benchmark measures).")
    var tail = true
    @Flag(help: "Print one JSON object.") var json = false
    @Option(name: .customLong("acked-log"), help: "Append every acknowledged (stream, DLSN, payload CRC32C) to this file.")
    var ackedLog: String?

    struct Parameters: Encodable {
        var target: String
        var streams: Int
        var clients: Int
        var pipeline: Int
        var size: Int
    }

    /// Acknowledged → delivered to a tailing reader.
    struct TailFigures: Encodable {
        var tail_p50_ms: Double
        var tail_p99_ms: Double
        var tail_records: Int
    }

    func validate() throws {
        do { _ = try MetadataURI(parsing: metadata) } catch { throw ValidationError("--metadata: \(error)") }
        if let proxy {
            do { _ = try ProxyClient.addresses(parsing: proxy) } catch { throw ValidationError("--proxy: \(error)") }
        }
        guard (1...1000).contains(streams) else { throw ValidationError("--streams must be 1...1000") }
        guard (1...1024).contains(clients) else { throw ValidationError("--clients must be 1...1024") }
        guard (1...1024).contains(pipeline) else { throw ValidationError("--pipeline must be 1...1024") }
        guard (16...LogRecord.payloadBytesMax).contains(size) else { throw ValidationError("--size must be 16...\(LogRecord.payloadBytesMax)") }
        guard duration > 0 && duration <= 3600 else { throw ValidationError("--duration must be 0...3600") }
        guard (1...1024).contains(entriesInFlight) else { throw ValidationError("--entries-in-flight must be 1...1024") }
    }

    func run() async throws {
        let identity = try tls.identity()
        let store = try MetadataURI.connect(metadata, tls: identity)
        var options = LogOptions()
        options.readPollTimeout = .milliseconds(500)
        options.entriesInFlightMax = entriesInFlight
        var poolOptions = BookiePool.Options()
        poolOptions.tls = identity
        let namespace = Namespace(pool: BookiePool(cluster: Cluster(store: store), options: poolOptions), options: options)
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let names = (0..<streams).map { "bench-\(run)-\($0)" }
        var proxyOptions = ProxyClient.Options()
        proxyOptions.tls = identity
        let client = try proxy.map { ProxyClient(proxies: try ProxyClient.addresses(parsing: $0), options: proxyOptions) }
        var writers: [String: LogWriter] = [:]
        do {
            for name in names {
                if let client { try await client.create(name) } else { writers[name] = try await namespace.openWriter(name) }
            }
        } catch {
            throw BenchError("creating streams: \(error)")
        }
        let tally = WriteTally(ackedLog: ackedLog), tailLatency = TailLatency()
        let readers = tail ? try await names.asyncMap { name in (name, try await namespace.openReader(name)) } : []
        let stop = StopFlag()
        let readerTasks = readers.map { name, reader in
            Task { await Self.tail(reader, name, tail: tailLatency, stop: stop) }
        }
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(duration * 1000))
        let streamWriters = writers
        let tailing = tail ? tailLatency : nil
        await withTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                let name = names[c % names.count]
                for lane in 0..<pipeline {
                    let id = UInt64(c * 1024 + lane)
                    group.addTask {
                        await withCheckedContinuation { done in
                            Lane(name, lane: id, size: size, until: deadline, proxy: client,
                                 writer: streamWriters[name], tally: tally, tail: tailing, done: done).step(1)
                        }
                    }
                }
            }
        }
        let elapsed = Double(micros(ContinuousClock.now - start)) / 1e6
        // Readers catch up (bounded), then stop.
        let catchUp = ContinuousClock.now + .seconds(10)
        while tail && ContinuousClock.now < catchUp && !tailLatency.caughtUp {
            try await Task.sleep(for: .milliseconds(50))
        }
        stop.set()
        for task in readerTasks { await task.value }
        for writer in writers.values { try? await writer.close() }
        await client?.shutdown()
        await namespace.close()
        await namespace.pool.shutdown()
        await store.shutdown()
        try report(try await tally.finish(), tailLatency, elapsed: elapsed)
    }

    /// One closed-loop writer: each answer records its latency and sends the next record from its completion,
    /// on the thread that delivered the answer (the proxy connection's event loop; the ledger's confirming
    /// thread when direct), as redis-benchmark's event loop does. A write then costs no task and no hop between
    /// threads, and the figures are the service's rather than the benchmark's.
    final class Lane: Sendable {
        let name: String
        let lane: UInt64
        let template: [UInt8]
        let deadline: ContinuousClock.Instant
        let proxy: ProxyClient?
        let writer: LogWriter?
        let tally: WriteTally
        let tail: TailLatency?
        let done: CheckedContinuation<Void, Never>

        init(_ name: String, lane: UInt64, size: Int, until deadline: ContinuousClock.Instant, proxy: ProxyClient?,
             writer: LogWriter?, tally: WriteTally, tail: TailLatency?, done: CheckedContinuation<Void, Never>) {
            self.name = name
            self.lane = lane
            template = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            self.deadline = deadline
            self.proxy = proxy
            self.writer = writer
            self.tally = tally
            self.tail = tail
            self.done = done
        }

        /// Sends record `sequence`; its answer sends the next until the deadline.
        func step(_ sequence: UInt64) {
            guard ContinuousClock.now < deadline else { return done.resume() }
            // Lane and sequence make each payload (and its CRC) distinct.
            var payload = template
            withUnsafeBytes(of: lane.bigEndian) { payload.replaceSubrange(0..<8, with: $0) }
            withUnsafeBytes(of: sequence.bigEndian) { payload.replaceSubrange(8..<16, with: $0) }
            let crc = tally.keepsAcked ? CRC32C.checksum(payload) : 0
            let sent = ContinuousClock.now
            let answered: @Sendable (Result<DLSN, any Error>) -> Void = { [self] result in
                switch result {
                case .success(let dlsn):
                    let now = ContinuousClock.now
                    tail?.acknowledged(name, dlsn, at: now)
                    let line = tally.keepsAcked ? "S\(name) \(dlsn) \(hex8(crc))" : nil
                    tally.confirmed(latency: now - sent, ackedLine: line)
                    step(sequence + 1)
                case .failure(let error):
                    tally.failed(error)
                    done.resume()
                }
            }
            if let proxy {
                proxy.write(name, payload, completion: answered)
            } else {
                writer!.writeBulk(assigning: [(nil, payload)]) { answered($0.map { $0[0] }) }
            }
        }
    }

    static func tail(_ reader: LogReader, _ name: String, tail: TailLatency, stop: StopFlag) async {
        while !stop.isSet {
            guard let batch = try? await reader.readBulk(max: 1000, wait: .milliseconds(200)) else { return }
            let now = ContinuousClock.now
            for record in batch { tail.delivered(name, record.dlsn, at: now) }
        }
    }

    func report(_ counts: WriteTally.Counts, _ tailLatency: TailLatency, elapsed: Double) throws {
        let (tailSummary, tailRecords) = tailLatency.figures
        let result = RunReport(parameters: Parameters(target: proxy.map { "proxy \($0)" } ?? "direct \(metadata)", streams: streams,
                                                      clients: clients, pipeline: pipeline, size: size),
                               figures: RunFigures(counts.histogram, ops: counts.ops, errors: counts.errors, bytesPerOp: size,
                                                   seconds: elapsed),
                               extra: TailFigures(tail_p50_ms: tailSummary.p50_ms, tail_p99_ms: tailSummary.p99_ms,
                                                  tail_records: tailRecords))
        if json {
            printJSON(result)
        } else {
            let tailLine = tail ? "tail p50 \(fmt(tailSummary.p50_ms, 3)) ms, p99 \(fmt(tailSummary.p99_ms, 3)) ms over \(tailRecords) records; "
                : "no tailing readers; "
            print("log \(result.parameters.target) \(streams) streams \(clients)x\(pipeline) \(size) B: \(result.figures.line("writes")); "
                  + tailLine + counts.errorsLine)
        }
        if counts.errors > 0 { throw ExitCode(1) }
    }
}

/// Set once, from the main task; read by the readers.
final class StopFlag: Sendable {
    private let flag = Atomic(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
