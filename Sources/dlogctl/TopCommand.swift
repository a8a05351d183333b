import ArgumentParser
import DLogMetadata
import Foundation
import NIOPosix

struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live view of the cluster: bookies, proxies and the metadata store, refreshed every interval.",
        discussion: """
            Lists the parts registered in metadata and reads each one's metrics port (found under /monitoring/ in \
            metadata; a role publishes its port there when `metrics_port` is set). Rates and p99s are over the \
            last interval. With --once, it samples twice, one interval apart, prints one view and exits; with \
            --json, each view is one JSON object (one per line when live).
            """)
    @OptionGroup var options: MetadataOption
    @Option(help: "Seconds between views (and between the two samples of --once).") var interval = 2.0
    @Flag(help: "Print one view and exit.") var once = false
    @Flag(help: "JSON instead of a table.") var json = false

    func validate() throws {
        guard interval >= 0.2 && interval <= 3600 else { throw ValidationError("--interval must be between 0.2 and 3600 seconds") }
    }

    func run() async throws {
        let cluster = try options.cluster()
        let tls = try options.tls.identity()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let host = (try? MetadataURI(parsing: options.metadata))?.endpoints.first?.host ?? "127.0.0.1"
        let terminal = isatty(STDOUT_FILENO) == 1 && !json
        do {
            if terminal { print("dlogctl top: sampling \(options.metadata) for \(interval) s...") }
            var last = try await TopSample.take(cluster: cluster, metadataHost: host, tls: tls, group: group)
            while true {
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                let next = try await TopSample.take(cluster: cluster, metadataHost: host, tls: tls, group: group)
                let view = TopView(from: last, to: next, uri: options.metadata)
                if json {
                    let encoder = JSONEncoder()
                    encoder.keyEncodingStrategy = .convertToSnakeCase
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(view), as: UTF8.self))
                } else {
                    // Clear the screen and draw from its top, the way top(1) refreshes.
                    if terminal { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                    print(TopTable.render(view, live: !once))
                }
                fflush(nil)
                if once { break }
                last = next
            }
        } catch let failure as TopFailure {
            FileHandle.standardError.write(Data("dlogctl top: \(failure)\n".utf8))
            await cluster.store.shutdown()
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        } catch {
            await cluster.store.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
        await cluster.store.shutdown()
        try? await group.shutdownGracefully()
    }
}

/// `TopView` as text for people: a header, the metadata store, then a table of bookies and one of proxies.
enum TopTable {
    static func render(_ view: TopView, live: Bool) -> String {
        var lines = ["dlogctl top  \(view.metadata.uri)  \(view.time)  over \(format(view.intervalSeconds)) s"
                     + (live ? "  (Ctrl-C to stop)" : ""), ""]
        lines.append("METADATA  answers a read in \(format(view.metadata.roundTripMs)) ms")
        if !view.metadata.servers.isEmpty {
            var rows = [["SERVER", "REQ/S", "P99 MS", "LEASES", "WATCHES", "REVISION", "METRICS"]]
            for s in view.metadata.servers {
                rows.append([s.id, format(s.requestsPerSecond), format(s.requestP99Ms), format(s.leases), format(s.watchers),
                             format(s.revision), s.metrics])
            }
            lines += alignedColumns(rows, indent: "  ")
        }
        lines += ["", "BOOKIES (\(view.bookies.count))"]
        var bookieRows = [["ID", "STATE", "ADDRESS", "ADDS/S", "ADD P99 MS", "SYNC P99 MS", "DISK USED", "METRICS"]]
        for b in view.bookies {
            bookieRows.append([b.id, b.state, b.address, format(b.addsPerSecond), format(b.addP99Ms), format(b.syncP99Ms),
                               b.diskUsedRatio.map { "\(Int(($0 * 100).rounded()))%" } ?? "-", b.metrics])
        }
        lines += view.bookies.isEmpty ? ["  (none registered)"] : alignedColumns(bookieRows, indent: "  ")
        lines += ["", "PROXIES (\(view.proxies.count))"]
        var proxyRows = [["ID", "ADDRESS", "STREAMS", "WRITES/S", "WRITE P99 MS", "FAILURES/S", "METRICS"]]
        for p in view.proxies {
            proxyRows.append([p.id, p.address, format(p.streams), format(p.writesPerSecond), format(p.writeP99Ms),
                              format(p.failuresPerSecond), p.metrics])
        }
        lines += view.proxies.isEmpty ? ["  (none registered)"] : alignedColumns(proxyRows, indent: "  ")
        return lines.joined(separator: "\n")
    }

    /// A figure to at most three significant decimals; "-" when there is none.
    static func format(_ value: Double?) -> String {
        guard let value else { return "-" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(format: value >= 100 ? "%.0f" : value >= 10 ? "%.1f" : "%.3g", value)
    }
}
