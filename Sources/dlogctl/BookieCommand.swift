import ArgumentParser
import DLogMetadata
import DLogWire
import Foundation

struct BookieCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bookie", abstract: "Bookies of the cluster.",
                                                    subcommands: [List.self, Decommission.self, Drain.self])

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
            abstract: "Retire a stopped or lost bookie: move its copies to other bookies, then remove it.",
            discussion: """
                Marks every ledger naming the bookie for re-replication, then waits with a progress line (ledgers \
                left, bytes copied, rate, ETA) until no ledger names it; then removes its cookie. Run it again to \
                follow a retirement started with --no-wait. A running bookie is refused: stop it, or use `drain`.
                """)
        @OptionGroup var options: MetadataOption
        @Argument(help: "The bookie id, as `dlogctl bookie list` shows it.") var id: String
        @Flag(help: "Mark its ledgers and return at once.") var noWait = false
        @Flag(help: "One JSON object at the end instead of progress lines.") var json = false

        func run() async throws {
            try await Retirement(options: options, id: id, drain: false, noWait: noWait, json: json).run()
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "drain",
            abstract: "Retire a live bookie with no time at reduced durability: it turns read-only, its copies move, then it leaves.",
            discussion: """
                Refused when the other writable bookies could not hold the largest ensemble the bookie is part of. \
                When done, the bookie deregisters by itself; stop it and reuse its disks afresh.
                """)
        @OptionGroup var options: MetadataOption
        @Argument(help: "The bookie id, as `dlogctl bookie list` shows it.") var id: String
        @Flag(help: "Start the drain and return at once.") var noWait = false
        @Flag(help: "One JSON object at the end instead of progress lines.") var json = false

        func run() async throws {
            try await Retirement(options: options, id: id, drain: true, noWait: noWait, json: json).run()
        }
    }
}
