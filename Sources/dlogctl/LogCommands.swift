import ArgumentParser
import DLogCLI
import DistributedLog
import DLogLedger
import DLogMetadata
import DLogWire
import Foundation

/// Where log commands go: a proxy (the write tier) or the metadata store (the core library, directly). Writes,
/// creates, deletes and truncations go to a proxy unless only `--metadata` is given; listing, showing and
/// reading use the metadata store. Both defaults reach a standalone (`dlogd standalone`).
struct LogTarget: ParsableArguments {
    @Option(help: "Proxies, HOST:PORT[,HOST:PORT…] (default 127.0.0.1:3190): a proxy that does not answer is failed over to another.")
    var proxy: String?
    @Option(help: "Metadata store URI (default dlog://127.0.0.1:3180).") var metadata: String?
    @OptionGroup var tls: TLSClientOptions

    var metadataURI: String { metadata ?? "dlog://127.0.0.1:3180" }
    /// The proxy to use for changes, or nil to change through the core library.
    var proxyForChanges: String? { proxy ?? (metadata == nil ? "127.0.0.1:3190" : nil) }

    func namespace() throws -> (Namespace, any MetadataStore) {
        if proxy != nil && metadata == nil {
            throw ValidationError("this command reads through the metadata store and the bookies, not a proxy: give --metadata URI")
        }
        let store: any MetadataStore
        let identity = try tls.identity()
        do {
            store = NoticingStore(store: try MetadataURI.connect(metadataURI, requestTimeout: .seconds(10), tls: identity),
                                  uri: metadataURI, notice: WaitNotice())
        } catch {
            throw ValidationError("--metadata: \(error)")
        }
        var options = LogOptions()
        options.readPollTimeout = .milliseconds(500)
        var poolOptions = BookiePool.Options()
        poolOptions.tls = identity
        return (Namespace(pool: BookiePool(cluster: Cluster(store: store), options: poolOptions), options: options), store)
    }

    /// Makes a change through the proxy, or directly with the core library (`--metadata` alone).
    func change(proxy viaProxy: (ProxyClient) async throws -> Void, direct: (Namespace) async throws -> Void) async throws {
        if let address = proxyForChanges {
            let client = try proxyClient(address)
            do { try await viaProxy(client) } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        } else {
            let (namespace, store) = try namespace()
            do { try await direct(namespace) } catch {
                await namespace.close()
                await namespace.pool.shutdown()
                await store.shutdown()
                throw error
            }
            await namespace.close()
            await namespace.pool.shutdown()
            await store.shutdown()
        }
    }

    /// A client of every proxy `--proxy` lists; it retries (for a metadata outage, a proxy failing over) for
    /// up to 30 s.
    func proxyClient(_ list: String) throws -> ProxyClient {
        let addresses: [String]
        do { addresses = try ProxyClient.addresses(parsing: list) } catch { throw ValidationError("--proxy: \(error)") }
        var options = ProxyClient.Options()
        options.tls = try tls.identity()
        let notice = WaitNotice()
        options.onWait = { problem, left in
            notice.say("waiting: \(problem); trying again for up to \(max(0, Int(left / .seconds(1)))) s", about: problem)
        }
        return ProxyClient(proxies: addresses, options: options)
    }
}


func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func checkName(_ name: String) throws {
    if let problem = LogName.problem(name) { throw ValidationError("invalid log name '\(name)': \(problem)") }
}

struct LogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log", abstract: "Logs: create, list, show, delete, truncate.",
                                                    subcommands: [Create.self, List.self, Show.self, Delete.self, Truncate.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create an empty log.")
        @OptionGroup var target: LogTarget
        @Argument(help: "The log's name.") var name: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try checkName(name)
            try await reportingErrors {
                try await target.change(proxy: { try await $0.create(name) }, direct: { try await $0.createLog(name) })
                if json { try printJSON(["created": name]) } else { print("created log \(name)") }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Logs, sorted by name.")
        @OptionGroup var target: LogTarget
        @Option(help: "Only names starting with this.") var prefix = ""
        @Flag(help: "Print one JSON array.") var json = false

        func run() async throws {
            let (namespace, store) = try target.namespace()
            try await reportingErrors {
                let names = try await namespace.listLogs(prefix: prefix)
                if json { try printJSON(names) } else { print(names.isEmpty ? "(no logs)" : names.joined(separator: "\n")) }
            }
            await namespace.pool.shutdown()
            await store.shutdown()
        }
    }

    struct SegmentRow: Encodable {
        var segment: Int64
        var ledger: UInt64
        var state: String
        var records: Int64
        var first_txid: Int64
        var last_txid: Int64
        var last_dlsn: String?
        var truncation: String
        var end_of_stream: Bool
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "A log's segments.")
        @OptionGroup var target: LogTarget
        @Argument(help: "The log's name.") var name: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try checkName(name)
            let (namespace, store) = try target.namespace()
            try await reportingErrors {
                guard try await namespace.logExists(name) else { throw LogError.noSuchLog(name) }
                let rows = try await namespace.segments(name).map { item -> SegmentRow in
                    let s = item.segment
                    let truncation: String
                    switch s.truncation {
                    case .active: truncation = "active"
                    case .truncated: truncation = "truncated"
                    case .partiallyTruncated(let minActive): truncation = "partial from \(minActive)"
                    }
                    return SegmentRow(segment: s.sequence, ledger: s.ledger.rawValue,
                                      state: s.state == .completed ? "completed" : "in progress",
                                      records: s.recordCount, first_txid: s.firstTxID, last_txid: s.lastTxID,
                                      last_dlsn: s.lastDLSN?.description, truncation: truncation, end_of_stream: s.endOfStream)
                }
                if json {
                    struct Shown: Encodable { var name: String; var segments: [SegmentRow] }
                    try printJSON(Shown(name: name, segments: rows))
                    return
                }
                var table = [["SEGMENT", "LEDGER", "STATE", "RECORDS", "FIRST TXID", "LAST TXID", "LAST DLSN", "TRUNCATION"]]
                for r in rows {
                    table.append(["\(r.segment)", "\(r.ledger)", r.state + (r.end_of_stream ? " (end)" : ""),
                                  r.state == "completed" ? "\(r.records)" : "-", "\(r.first_txid)",
                                  r.state == "completed" ? "\(r.last_txid)" : "-", r.last_dlsn ?? "-", r.truncation])
                }
                print("log \(name): \(rows.count) segment(s)")
                for line in alignedColumns(table) { print(line) }
            }
            await namespace.pool.shutdown()
            await store.shutdown()
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a log and its data.")
        @OptionGroup var target: LogTarget
        @Argument(help: "The log's name.") var name: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try checkName(name)
            try await reportingErrors {
                try await target.change(proxy: { try await $0.delete(name) }, direct: { try await $0.deleteLog(name) })
                if json { try printJSON(["deleted": name]) } else { print("deleted log \(name)") }
            }
        }
    }

    struct Truncate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "truncate", abstract: "Mark everything before a position as truncated (readers skip it; retention deletes it).")
        @OptionGroup var target: LogTarget
        @Argument(help: "The log's name.") var name: String
        @Option(help: "The first position kept, SEGMENT/ENTRY/SLOT.") var before: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try checkName(name)
            guard let dlsn = DLSN(parsing: before) else { throw ValidationError("--before \(before) is not SEGMENT/ENTRY/SLOT") }
            try await reportingErrors {
                try await target.change(proxy: { try await $0.truncate(name, before: dlsn) }, direct: { namespace in
                    let writer = try await namespace.openWriter(name, create: false)
                    try await writer.truncate(before: dlsn)
                    try await writer.close()
                })
                if json { try printJSON(["truncated": name, "before": dlsn.description]) } else { print("truncated log \(name) before \(dlsn)") }
            }
        }
    }
}

struct WriteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write", abstract: "Write records to a log: one per line of standard input (or of --file).",
        discussion: "Lines are sent in batches as they arrive, so `tail -f FILE | dlogctl write LOG` writes as the file grows.")
    @OptionGroup var target: LogTarget
    @Argument(help: "The log's name.") var name: String
    @Option(help: "Read the lines from this file instead of standard input.") var file: String?
    @Flag(help: "Print one JSON object per record written.") var json = false

    func run() async throws {
        try checkName(name)
        let input: FileHandle
        // A file's size is known: on a terminal, a bar shows how much of it is written.
        var bar: ProgressBar?
        if let file {
            guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot read --file \(file)") }
            input = handle
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value ?? 0
            bar = ProgressBar(total: size, unit: "records")
        } else {
            input = .standardInput
        }
        var written = 0, bytesWritten: Int64 = 0
        var first: DLSN?, last: DLSN?
        let client = try target.proxyForChanges.map { try target.proxyClient($0) }
        var direct: (Namespace, any MetadataStore, LogWriter)?
        do {
            try await reportingErrors {
                for try await batch in LineBatches(input) {
                    let dlsns: [DLSN]
                    if let client {
                        dlsns = try await client.writeBulk(name, batch.map { ProxyRecord(payload: Array($0.utf8)) })
                    } else {
                        if direct == nil {
                            let (namespace, store) = try target.namespace()
                            direct = (namespace, store, try await namespace.openWriter(name))
                        }
                        dlsns = try await direct!.2.writeBulk(assigning: batch.map { (nil, Array($0.utf8)) })
                    }
                    written += dlsns.count
                    bytesWritten += batch.reduce(Int64(0)) { $0 + Int64($1.utf8.count) + 1 }
                    bar?.update(done: bytesWritten, count: written)
                    first = first ?? dlsns.first
                    last = dlsns.last ?? last
                    if json { for dlsn in dlsns { try printJSON(["dlsn": dlsn.description]) } }
                }
            }
        } catch {
            bar?.finish()
            // What was written before the failure is durable: say how much.
            if written > 0 { FileHandle.standardError.write(Data("dlogctl: \(written) record(s) were written before the failure\n".utf8)) }
            await finish(client, direct)
            throw error
        }
        bar?.finish()
        await finish(client, direct)
        if !json {
            if let first, let last {
                print("wrote \(written) record(s) to \(name): \(first) … \(last)")
            } else {
                print("wrote nothing (no input lines)")
            }
        }
    }

    private func finish(_ client: ProxyClient?, _ direct: (Namespace, any MetadataStore, LogWriter)?) async {
        await client?.shutdown()
        if let (namespace, store, writer) = direct {
            try? await writer.close()
            await namespace.close()
            await namespace.pool.shutdown()
            await store.shutdown()
        }
    }
}

/// Lines of a file or pipe in batches: a batch goes out when 1,000 lines or 1 MiB are gathered, or when no more
/// input is waiting (so a slow pipe is written as it comes, a file in large batches).
struct LineBatches: AsyncSequence {
    typealias Element = [String]
    let handle: FileHandle
    init(_ handle: FileHandle) { self.handle = handle }

    struct AsyncIterator: AsyncIteratorProtocol {
        let fd: Int32
        var pending = Data()
        var ended = false

        mutating func next() async throws -> [String]? {
            var lines: [String] = []
            var bytes = 0
            while lines.count < 1000 && bytes < (1 << 20) {
                if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    lines.append(line)
                    bytes += line.utf8.count
                    continue
                }
                if ended {
                    if !pending.isEmpty {
                        lines.append(String(decoding: pending, as: UTF8.self))
                        pending.removeAll()
                    }
                    break
                }
                // Send what we have rather than wait on a pipe that has nothing more for now.
                if !lines.isEmpty && !Self.readable(fd) { break }
                var chunk = [UInt8](repeating: 0, count: 65536)
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { ended = true } else { pending.append(contentsOf: chunk[0..<n]) }
            }
            return lines.isEmpty ? nil : lines
        }

        static func readable(_ fd: Int32) -> Bool {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            return poll(&poller, 1, 0) > 0
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(fd: handle.fileDescriptor) }
}

struct ReadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read", abstract: "Read records of a log, one per line (DLSN, txid, payload), from a position.")
    @OptionGroup var target: LogTarget
    @Argument(help: "The log's name.") var name: String
    @Option(name: .customLong("from-dlsn"), help: "Start at this position, SEGMENT/ENTRY/SLOT.") var fromDLSN: String?
    @Option(name: .customLong("from-txid"), help: "Start at the first record with at least this txid.") var fromTxID: Int64?
    @Flag(help: "Keep waiting for new records (until interrupted or --limit).") var follow = false
    @Option(help: "Stop after this many records.") var limit: Int?
    @Flag(help: "One JSON object per record (payload as UTF-8 text, or base64 when it is not).") var json = false

    func validate() throws {
        if fromDLSN != nil && fromTxID != nil { throw ValidationError("give --from-dlsn or --from-txid, not both") }
        if let fromDLSN, DLSN(parsing: fromDLSN) == nil { throw ValidationError("--from-dlsn \(fromDLSN) is not SEGMENT/ENTRY/SLOT") }
        if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more") }
    }

    func run() async throws {
        try checkName(name)
        var position: LogReader.Position = fromTxID.map { .txid($0) } ?? .dlsn(fromDLSN.flatMap { DLSN(parsing: $0) } ?? .initial)
        let (namespace, store) = try target.namespace()
        try await reportingErrors {
            var count = 0
            var last: DLSN? = nil
            var waiting: String? = nil
            reading: while limit.map({ count < $0 }) ?? true {
                do {
                    let reader = try await namespace.openReader(name, from: position)
                    while limit.map({ count < $0 }) ?? true {
                        let batch = try await reader.readBulk(max: min(1000, (limit ?? Int.max) - count),
                                                              wait: follow ? .seconds(1) : .milliseconds(300))
                        if let problem = waiting {
                            FileHandle.standardError.write(Data("dlogctl: reading again (after: \(problem))\n".utf8))
                            waiting = nil
                        }
                        if batch.isEmpty && !follow { break reading }
                        // After a reopen the reader starts at the last record printed: skip what was printed.
                        for record in batch where last.map({ record.dlsn > $0 }) ?? true {
                            try printRecord(record)
                            last = record.dlsn
                            count += 1
                        }
                    }
                    break reading
                } catch LogError.endOfStream {
                    if !json { print("(end of stream)") }
                    break reading
                } catch where follow && Self.outlastable(error) {
                    // Following keeps following: the metadata role restarting, or a bookie going away, is waited
                    // out, and reading resumes after the last record printed.
                    if waiting == nil {
                        FileHandle.standardError.write(Data("dlogctl: waiting, will read again: \(error)\n".utf8))
                        waiting = "\(error)"
                    }
                    if let last { position = .dlsn(last) }
                    try await Task.sleep(for: .seconds(1))
                }
            }
        }
        await namespace.pool.shutdown()
        await store.shutdown()
    }

    /// Errors a follower waits out; a missing log, bad position or truncated data ends it.
    static func outlastable(_ error: any Error) -> Bool {
        switch error {
        case LogError.noSuchLog, LogError.invalidName, LogError.truncated: return false
        case is CancellationError: return false
        default: return true
        }
    }

    /// One record, one line. When following, each line is flushed at once: a tail that is killed, or whose
    /// output goes to a pipe or file (block-buffered), loses nothing it has read.
    private func printRecord(_ record: LogRecordWithDLSN) throws {
        let text = String(bytes: record.payload, encoding: .utf8)
        if json {
            struct Line: Encodable { var dlsn: String; var txid: Int64; var sequence_id: Int64; var payload: String; var encoding: String }
            try printJSON(Line(dlsn: record.dlsn.description, txid: record.txid, sequence_id: record.sequenceID,
                               payload: text ?? Data(record.payload).base64EncodedString(), encoding: text == nil ? "base64" : "utf8"))
        } else {
            print("\(record.dlsn)\t\(record.txid)\t\(text ?? "<\(record.payload.count) bytes>")")
        }
        if follow { fflush(nil) }  // nil: every output stream (stdout itself is not concurrency-safe to name)
    }
}
