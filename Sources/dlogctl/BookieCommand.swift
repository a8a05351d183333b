import ArgumentParser
import DLogMetadata
import DLogWire
import Foundation

struct BookieCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bookie", abstract: "Bookies of the cluster.",
                                                    subcommands: [List.self, Decommission.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list",
                                                        abstract: "Registered (live) bookies and their state.")
        @OptionGroup var options: MetadataOption
        @Flag(help: "One JSON array instead of a table.") var json = false

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                let bookies = try await cluster.bookies()
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(bookies), as: UTF8.self))
                } else {
                    print(Self.table(bookies))
                }
            }
            await cluster.store.shutdown()
        }

        static func table(_ bookies: [BookieRegistration]) -> String {
            var rows = [["ID", "STATE", "ADDRESS", "RACK", "LEDGER FREE", "JOURNAL FREE"]]
            for bookie in bookies {
                func free(_ role: String) -> String {
                    let disks = bookie.disks.filter { $0.role == role }
                    let total = disks.reduce(0) { $0 + $1.totalBytes }, free = disks.reduce(0) { $0 + $1.freeBytes }
                    return total == 0 ? "-" : "\(free >> 30) GiB (\(free * 100 / total)%)"
                }
                rows.append([bookie.id.rawValue, bookie.readOnly ? "read-only" : "writable", bookie.address,
                             bookie.rack.isEmpty ? "-" : bookie.rack, free("ledger"), free("journal")])
            }
            return alignedColumns(rows).joined(separator: "\n") + (bookies.isEmpty ? "\n(no bookies registered)" : "")
        }
    }

    struct Decommission: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decommission",
            abstract: "Remove a stopped bookie that holds no ledger data from the cluster (its cookie).")
        @OptionGroup var options: MetadataOption
        @Argument(help: "The bookie id, as `dlogctl bookie list` shows it.") var id: String

        func run() async throws {
            let bookie = BookieID(id)
            if let problem = bookie.problem { throw ValidationError(problem) }
            let cluster = try options.cluster()
            try await reportingErrors {
                try await cluster.decommission(bookie)
                print("decommissioned bookie \(bookie): its cookie is removed; its disks may be reused afresh")
            }
            await cluster.store.shutdown()
        }
    }
}
