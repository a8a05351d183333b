import ArgumentParser
import DistributedLog
import DLogMetadata
import Foundation

/// `dlogctl acl`: per-log rights that proxies with `tls_mode = required` check (docs/security.md, "Per-log
/// rights"). They live in metadata; proxies follow changes within a moment.
struct ACLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl", abstract: "Per-log rights of principals on proxies that require TLS.",
        subcommands: [Grant.self, Revoke.self, List.self])

    /// `--principal`, `--prefix`, and the rights, as grant and revoke take them.
    struct Target: ParsableArguments {
        @Option(help: "The principal: the name its certificate gives (by default its common name).") var principal: String
        @Option(help: "Logs whose names start with this (\"\" for every log).") var prefix: String

        func validate() throws {
            guard !principal.isEmpty else { throw ValidationError("--principal must not be empty") }
        }
    }

    static func rights(_ list: String) throws -> Set<LogRight> {
        var rights: Set<LogRight> = []
        for word in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !word.isEmpty {
            guard let right = LogRight(rawValue: word) else {
                throw ValidationError("--rights: '\(word)' is not a right; allowed: read, write, admin")
            }
            rights.insert(right)
        }
        guard !rights.isEmpty else { throw ValidationError("--rights: name at least one of read, write, admin") }
        return rights
    }

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "grant", abstract: "Give a principal rights on the logs under a prefix.")
        @OptionGroup var options: MetadataOption
        @OptionGroup var target: Target
        @Option(help: "Comma-separated: read (find a stream's owner), write (write), admin (create, truncate, delete).")
        var rights: String

        func run() async throws {
            let rights = try ACLCommand.rights(self.rights)
            let cluster = try options.cluster()
            try await reportingErrors {
                try await LogACL.grant(rights, on: target.prefix, to: target.principal, in: cluster.store)
            }
            await cluster.store.shutdown()
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "revoke", abstract: "Take rights on a prefix from a principal (all of them without --rights).")
        @OptionGroup var options: MetadataOption
        @OptionGroup var target: Target
        @Option(help: "Comma-separated rights to take; all when not given.") var rights: String?

        func run() async throws {
            let rights = try self.rights.map(ACLCommand.rights)
            let cluster = try options.cluster()
            try await reportingErrors {
                try await LogACL.revoke(rights, on: target.prefix, from: target.principal, in: cluster.store)
            }
            await cluster.store.shutdown()
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every principal's grants.")
        @OptionGroup var options: MetadataOption
        @Flag(help: "One JSON object: principal → [{prefix, rights}].") var json = false

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                let all = try await LogACL.list(in: cluster.store)
                if json {
                    try printJSON(all)
                } else {
                    var rows = [["PRINCIPAL", "PREFIX", "RIGHTS"]]
                    for principal in all.keys.sorted() {
                        for grant in all[principal]!.sorted(by: { $0.prefix < $1.prefix }) {
                            rows.append([principal, grant.prefix.isEmpty ? "\"\"" : grant.prefix,
                                         grant.rights.sorted().map(\.rawValue).joined(separator: ",")])
                        }
                    }
                    for line in alignedColumns(rows) { print(line) }
                }
            }
            await cluster.store.shutdown()
        }
    }
}
