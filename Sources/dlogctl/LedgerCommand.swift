import ArgumentParser
import DLogMetadata
import DLogWire
import Foundation

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ledger", abstract: "Ledgers in metadata.",
                                                    subcommands: [List.self, Show.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every ledger, a line each, in id order.")
        @OptionGroup var options: MetadataOption
        @Flag(help: "Only ledgers with under-replication marks.") var underReplicated = false
        @Flag(help: "One JSON array instead of a table.") var json = false

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                var marked: [LedgerID: LedgerMarks] = [:]
                try await cluster.forEachMarked { id, marks, _ in marked[id] = marks }
                var rows = [["ID", "STATE", "QUORUMS", "LAST ENTRY", "BYTES", "FRAGMENTS", "MARKS"]]
                var objects: [[String: Any]] = []
                let visit: (LedgerID, LedgerMetadata) -> Void = { id, metadata in
                    let marks = marked[id]?.marks ?? []
                    rows.append([String(id.rawValue), LedgerView.state(metadata), LedgerView.quorums(metadata),
                                 metadata.state == .closed ? String(metadata.lastEntry.rawValue) : "-", String(metadata.length),
                                 String(metadata.fragments.count),
                                 marks.isEmpty ? "-" : marks.map { "\($0.bookie) \($0.reason.rawValue)" }.joined(separator: ", ")])
                    objects.append(LedgerView.object(id, metadata, marks: marks))
                }
                if underReplicated {
                    for id in marked.keys.sorted() {
                        if let (metadata, _) = try await cluster.ledger(id) { visit(id, metadata) }
                    }
                } else {
                    try await cluster.forEachLedger { id, metadata, _ in visit(id, metadata) }
                }
                if json {
                    print(LedgerView.encode(objects))
                } else {
                    print(alignedColumns(rows).joined(separator: "\n") + (rows.count == 1 ? "\n(no ledgers)" : ""))
                }
            }
            await cluster.store.shutdown()
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show", abstract: "One ledger: state, quorums, each fragment with its bookies, and any marks.")
        @OptionGroup var options: MetadataOption
        @Argument(help: "The ledger id.") var id: UInt64
        @Flag(help: "One JSON object instead of lines.") var json = false

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                let ledger = LedgerID(id)
                guard let (metadata, version) = try await cluster.ledger(ledger) else { throw ClusterError.noSuchLedger(ledger) }
                let marks = try await cluster.marks(of: ledger)?.0.marks ?? []
                if json {
                    print(LedgerView.encode(LedgerView.object(ledger, metadata, marks: marks)))
                    return
                }
                var lines = ["ledger \(id): \(LedgerView.state(metadata)), \(LedgerView.quorums(metadata)), version \(version)",
                             "last entry: \(metadata.state == .closed ? String(metadata.lastEntry.rawValue) : "- (open)"), \(metadata.length) bytes",
                             "created: \(RecoveryReport.time(metadata.creationTime))", "fragments:"]
                var rows = [["FIRST ENTRY", "BOOKIES"]]
                for fragment in metadata.fragments {
                    rows.append([String(fragment.firstEntry.rawValue), fragment.bookies.map(\.rawValue).joined(separator: ", ")])
                }
                lines += alignedColumns(rows, indent: "  ")
                lines.append("marks: " + (marks.isEmpty ? "none" : ""))
                for mark in marks {
                    var line = "  \(mark.bookie) \(mark.reason.rawValue) since \(RecoveryReport.time(mark.since))"
                    if !mark.fragments.isEmpty { line += ", fragments \(mark.fragments.map(String.init).joined(separator: ","))" }
                    if let entries = mark.entries { line += ", \(entries.count) entries" }
                    lines.append(line)
                }
                print(lines.joined(separator: "\n"))
            }
            await cluster.store.shutdown()
        }
    }
}

enum LedgerView {
    static func state(_ m: LedgerMetadata) -> String {
        switch m.state {
        case .open: return "open"
        case .inRecovery: return "in-recovery"
        case .closed: return "closed"
        }
    }

    static func quorums(_ m: LedgerMetadata) -> String { "E\(m.ensembleSize)/Qw\(m.writeQuorum)/Qa\(m.ackQuorum)" }

    static func object(_ id: LedgerID, _ m: LedgerMetadata, marks: [ReplicaMark]) -> [String: Any] {
        [
            "id": id.rawValue, "state": state(m), "ensemble_size": m.ensembleSize, "write_quorum": m.writeQuorum,
            "ack_quorum": m.ackQuorum, "last_entry": m.lastEntry.rawValue, "length": m.length, "creation_time_ms": m.creationTime,
            "fragments": m.fragments.map { ["first_entry": $0.firstEntry.rawValue, "bookies": $0.bookies.map(\.rawValue)] as [String: Any] },
            "marks": marks.map { mark -> [String: Any] in
                var o: [String: Any] = ["bookie": mark.bookie.rawValue, "reason": mark.reason.rawValue, "since_ms": mark.since,
                                        "fragments": mark.fragments]
                if let entries = mark.entries { o["entries"] = entries }
                return o
            },
        ]
    }

    static func encode(_ object: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
               as: UTF8.self)
    }
}
