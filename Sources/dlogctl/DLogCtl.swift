import ArgumentParser
import DLogCLI
import DistributedLog
import DLogMetadata
import DLogLedger
import DLogWire
import Foundation

@main
struct DLogCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlogctl",
        abstract: "Operate a DistributedLog cluster.",
        subcommands: [ClusterCommand.self, BookieCommand.self, LedgerCommand.self, RecoveryCommand.self, MetadataCommand.self,
                      LogCommand.self, WriteCommand.self,
                      ReadCommand.self, AdminCommand.self, TLSCommand.self, ACLCommand.self, InspectCommand.self,
                      TopCommand.self])

    static func main() async {
        await main(placingAdminOptions(Array(CommandLine.arguments.dropFirst())))
    }

    /// `dlogctl --socket PATH admin ...` and `dlogctl --instance NAME admin ...` mean `dlogctl admin --socket PATH
    /// ...`: the socket names the daemon, so operators write it first.
    static func placingAdminOptions(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            if word.hasPrefix("--socket=") || word.hasPrefix("--instance=") {
                leading.append(word)
                index += 1
            } else if (word == "--socket" || word == "--instance") && index + 1 < arguments.count {
                leading += [word, arguments[index + 1]]
                index += 2
            } else {
                break
            }
        }
        guard !leading.isEmpty, index < arguments.count, arguments[index] == "admin" else { return arguments }
        return ["admin"] + leading + arguments[(index + 1)...]
    }
}

/// `--metadata URI`, shared by every command that talks to the metadata store.
struct MetadataOption: ParsableArguments {
    @Option(help: "Metadata store: dlog://host:port[,host:port] or etcd://host:port[,host:port]/prefix.")
    var metadata = "dlog://127.0.0.1:3180"
    @OptionGroup var tls: TLSClientOptions

    func cluster() throws -> Cluster {
        let identity = try tls.identity()
        do {
            return Cluster(store: NoticingStore(store: try MetadataURI.connect(metadata, requestTimeout: .seconds(10), tls: identity),
                                                uri: metadata, notice: WaitNotice()))
        } catch {
            throw ValidationError("--metadata: \(error)")
        }
    }
}

/// Runs `body`, printing an operating error (the cluster's, the metadata store's, a log's, a ledger's or the
/// proxy's) as one clear line and exiting 1 instead of a stack of types.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error where error is ClusterError || error is MetadataError || error is LogError
        || error is LedgerError || error is ProxyFailure {
        FileHandle.standardError.write(Data("dlogctl: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "Cluster-wide records.",
                                                    subcommands: [Init.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Create the cluster instance id (once; refuses when there is one).")
        @OptionGroup var options: MetadataOption

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                let instance = try await cluster.initialize()
                print("initialized cluster \(instance) in \(options.metadata)")
            }
            await cluster.store.shutdown()
        }
    }
}
