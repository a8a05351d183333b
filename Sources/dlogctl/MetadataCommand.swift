import ArgumentParser
import DLogMetadata
import Foundation

struct MetadataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metadata", abstract: "The metadata store itself.",
                                                    subcommands: [Stats.self])

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stats", abstract: "Counters of a metadata role: revision, leases, watchers, group commit.")
        @OptionGroup var options: MetadataOption
        @Flag(help: "The counters as JSON.") var json = false

        func run() async throws {
            let uri: MetadataURI
            do { uri = try MetadataURI(parsing: options.metadata) } catch { throw ValidationError("--metadata: \(error)") }
            guard uri.backend == .dlog else {
                throw ValidationError("stats come from a metadata role (dlog://); for etcd use `etcdctl endpoint status`")
            }
            let store = RemoteStore(endpoints: uri.endpoints, tls: try options.tls.identity())
            try await reportingErrors {
                let text = try await store.stats()
                if json {
                    print(text)
                } else {
                    let counters = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
                    for line in alignedColumns(counters.keys.sorted().map { [$0, "\(counters[$0]!)"] }) { print(line) }
                }
            }
            await store.shutdown()
        }
    }
}
