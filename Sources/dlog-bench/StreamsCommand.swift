import ArgumentParser
import DistributedLog
import Foundation
import Histogram

/// Many streams through proxies: how long N streams take to open when their writers all start at once, how many
/// first writes are refused, and the latency of a trickle of writes spread over them (issue figures for the log
/// tier at scale). Streams are created first (not timed); then every stream gets its first write at once (at most
/// --concurrency in flight), which makes a proxy own it; then, with --trickle-rate, writes go at that total rate
/// to streams chosen at random, each write on its own schedule so a slow one does not hold back the next.
struct StreamsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streams",
        abstract: "Open many streams at once through proxies, then trickle writes over them; prints open time, refusals and latency.")

    @Option(help: "Proxies, HOST:PORT[,HOST:PORT…].") var proxy: String
    @Option(help: "Streams, each new for the run.") var streams = 10_000
    @Option(help: "First writes in flight at once (default: all of them).") var concurrency: Int?
    @Option(help: "Payload bytes per record.") var size = 100
    @Option(name: .customLong("trickle-rate"), help: "Writes per second over all streams after they are open (0: none).")
    var trickleRate = 0
    @Option(name: .customLong("trickle-secs"), help: "Seconds of trickle.") var trickleSecs = 10.0
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        do { _ = try ProxyClient.addresses(parsing: proxy) } catch { throw ValidationError("--proxy: \(error)") }
        guard (1...1_000_000).contains(streams) else { throw ValidationError("--streams must be 1...1000000") }
        if let concurrency, !(1...1_000_000).contains(concurrency) { throw ValidationError("--concurrency must be 1...1000000") }
        guard (16...LogRecord.payloadBytesMax).contains(size) else { throw ValidationError("--size must be 16...\(LogRecord.payloadBytesMax)") }
        guard (0...1_000_000).contains(trickleRate) else { throw ValidationError("--trickle-rate must be 0...1000000") }
        guard trickleSecs > 0 && trickleSecs <= 3600 else { throw ValidationError("--trickle-secs must be 0...3600") }
    }

    struct Figures: Encodable {
        var streams: Int
        var concurrency: Int
        var open_s: Double
        var opened: Int
        var refused: Int
        var first_refusal: String?
        var open_p50_ms: Double
        var open_p99_ms: Double
        var trickle_rate: Int
        var trickle_ops: Int
        var trickle_errors: Int
        var trickle_p50_ms: Double?
        var trickle_p99_ms: Double?
        var trickle_p999_ms: Double?
        var trickle_max_ms: Double?
    }

    func run() async throws {
        let client = ProxyClient(proxies: try ProxyClient.addresses(parsing: proxy))
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let names = (0..<streams).map { "many-\(run)-\($0)" }
        try await Self.forEach(names, concurrency: 64) { name in try await client.create(name) }

        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let open = WriteTally(ackedLog: nil)
        let start = ContinuousClock.now
        try await Self.forEach(names, concurrency: concurrency ?? streams) { name in
            let sent = ContinuousClock.now
            do {
                _ = try await client.write(name, payload)
                open.confirmed(latency: ContinuousClock.now - sent, ackedLine: nil)
            } catch {
                open.failed(error)
            }
        }
        let openSeconds = Double(micros(ContinuousClock.now - start)) / 1e6
        let opened = try await open.finish()

        var trickle = WriteTally.Counts()
        if trickleRate > 0 {
            let tally = WriteTally(ackedLog: nil)
            let interval = Duration.nanoseconds(1_000_000_000 / Int64(trickleRate))
            let total = Int(Double(trickleRate) * trickleSecs)
            let begin = ContinuousClock.now
            await withTaskGroup(of: Void.self) { group in
                for n in 0..<total {
                    let due = begin + interval * n
                    if due > .now { try? await Task.sleep(until: due) }
                    let name = names.randomElement()!
                    group.addTask {
                        let sent = ContinuousClock.now
                        do {
                            _ = try await client.write(name, payload)
                            tally.confirmed(latency: ContinuousClock.now - sent, ackedLine: nil)
                        } catch {
                            tally.failed(error)
                        }
                    }
                }
            }
            trickle = try await tally.finish()
        }
        await client.shutdown()

        func ms(_ h: Histogram<UInt64>, _ p: Double) -> Double { (Double(h.valueAtPercentile(p)) / 1000 * 1000).rounded() / 1000 }
        let figures = Figures(
            streams: streams, concurrency: concurrency ?? streams, open_s: (openSeconds * 1000).rounded() / 1000,
            opened: opened.ops, refused: opened.errors, first_refusal: opened.firstError,
            open_p50_ms: ms(opened.histogram, 50), open_p99_ms: ms(opened.histogram, 99),
            trickle_rate: trickleRate, trickle_ops: trickle.ops, trickle_errors: trickle.errors,
            trickle_p50_ms: trickle.ops > 0 ? ms(trickle.histogram, 50) : nil,
            trickle_p99_ms: trickle.ops > 0 ? ms(trickle.histogram, 99) : nil,
            trickle_p999_ms: trickle.ops > 0 ? ms(trickle.histogram, 99.9) : nil,
            trickle_max_ms: trickle.ops > 0 ? (Double(trickle.histogram.max) / 1000 * 1000).rounded() / 1000 : nil)
        if json {
            printJSON(figures)
        } else {
            print("\(streams) streams opened in \(fmt(openSeconds, 3)) s (\(concurrency ?? streams) at once): "
                  + "\(opened.ops) opened, \(opened.errors) refused\(opened.firstError.map { " (first: \($0))" } ?? ""); "
                  + "first write p50 \(fmt(figures.open_p50_ms, 3)) ms, p99 \(fmt(figures.open_p99_ms, 3)) ms")
            if trickleRate > 0 {
                print("trickle \(trickleRate)/s for \(fmt(trickleSecs, 1)) s: \(trickle.ops) writes, \(trickle.errors) errors; "
                      + "p50 \(fmt(figures.trickle_p50_ms ?? 0, 3)) ms, p99 \(fmt(figures.trickle_p99_ms ?? 0, 3)) ms, "
                      + "p99.9 \(fmt(figures.trickle_p999_ms ?? 0, 3)) ms, max \(fmt(figures.trickle_max_ms ?? 0, 3)) ms")
            }
        }
        if opened.errors > 0 || trickle.errors > 0 { throw ExitCode(1) }
    }

    /// Runs `body` for each of `items`, at most `concurrency` at once.
    static func forEach(_ items: [String], concurrency: Int, _ body: @escaping @Sendable (String) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, item) in items.enumerated() {
                if index >= concurrency { try await group.next() }
                group.addTask { try await body(item) }
            }
            try await group.waitForAll()
        }
    }
}
