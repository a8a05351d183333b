import ArgumentParser

@main
struct DLogBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlog-bench",
        abstract: "Benchmarks for DistributedLog: the disk itself, a bookie, the metadata store, and read-back verification.",
        subcommands: [DiskCommand.self, BookieCommand.self, LedgerCommand.self, MetadataCommand.self, LogBenchCommand.self, StreamsCommand.self,
                      VerifyCommand.self, InfoCommand.self, IndexCommand.self])
}
