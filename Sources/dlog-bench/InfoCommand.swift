import ArgumentParser
import DLogLedger
import Foundation

/// GET_INFO of a running bookie: state, space, and per journal the engine, sync mode and counters.
struct InfoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info",
        abstract: "Show a bookie's GET_INFO: state, journal engine and counters (JSON with --json).")

    @Option(help: "Bookie address HOST:PORT.") var target: String
    @Flag(help: "Print the bookie's JSON as is.") var json = false

    func run() async throws {
        let (host, port) = try parseTarget(target)
        let client = try await BookieClient.connect(host: host, port: port)
        let text = try await client.info()
        await client.close()
        if json {
            print(text)
            return
        }
        guard let o = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw BenchError("GET_INFO answered something that is not JSON: \(text.prefix(200))")
        }
        print("state \(o["state"] ?? "?"), ledgers \(o["ledgers"] ?? "?"), entry logs \(o["entryLogs"] ?? "?"), "
              + "checkpoints \(o["checkpoints"] ?? "?"), write cache \(o["cacheBytes"] ?? "?") B")
        for (i, j) in ((o["journals"] as? [[String: Any]]) ?? []).enumerated() {
            print("journal \(i): engine \(j["engine"] ?? "?"), sync \(j["syncMode"] ?? "?"), syncs \(j["syncs"] ?? "?"), "
                  + "records \(j["recordsSynced"] ?? "?"), queue \(j["queueDepth"] ?? "?")"
                  + ((j["failed"] as? String).map { ", FAILED: \($0)" } ?? ""))
        }
    }
}
