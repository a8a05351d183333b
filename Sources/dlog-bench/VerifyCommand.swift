import ArgumentParser
import DLogLedger
import DLogMetadata
import DLogWire
import Foundation

/// Checks an --acked-log against what the system holds now: a bookie's entries byte for byte (through their
/// CRC), or a metadata store's keys at their acknowledged version or a later one.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify",
        abstract: "Check every acknowledged entry or update in an --acked-log; exit non-zero at the first bad one.",
        discussion: """
            Give exactly one of --target (a bookie; the log of dlog-bench bookie) or --metadata (a metadata \
            store; the log of dlog-bench metadata, ledger or log: records written through a proxy are read \
            back through the metadata store and the bookies).
            """)

    @Option(help: "Bookie address HOST:PORT.") var target: String?
    @Option(help: "Metadata store: dlog://HOST:PORT or etcd://HOST:PORT[/prefix], as given to dlog-bench metadata.")
    var metadata: String?
    @Option(name: .customLong("acked-log"), help: "File written by dlog-bench bookie or metadata --acked-log.")
    var ackedLog: String

    /// How long one read may wait for an answer, and how long verify keeps retrying a store that is unavailable.
    static let metadataRequestTimeout = Duration.seconds(5)
    static let metadataUnavailableMax = Duration.seconds(20)

    func validate() throws {
        switch (target, metadata) {
        case (nil, nil):
            throw ValidationError("give --target HOST:PORT to verify a bookie, or --metadata URI to verify a metadata store")
        case (.some, .some):
            throw ValidationError("give only one of --target (a bookie) and --metadata (a metadata store), not both")
        case (nil, .some(let metadata)):
            do {
                _ = try MetadataURI(parsing: metadata)
            } catch {
                throw ValidationError("--metadata: \(error)")
            }
        case (.some, nil):
            break
        }
    }

    func run() async throws {
        if let target {
            try await verifyBookie(target)
        } else if let metadata {
            // A log of dlog-bench ledger names ledgers (`L<id> entry crc`); one of dlog-bench metadata, keys.
            let text = (try? String(contentsOfFile: ackedLog, encoding: .utf8)) ?? ""
            if text.hasPrefix("L") {
                try await LedgerVerification(logPath: ackedLog, text: text).run(metadata: metadata)
            } else if text.hasPrefix("S") {
                // A log of dlog-bench log: records of streams, read back through the metadata store and bookies.
                try await LogVerification(logPath: ackedLog, text: text).run(metadata: metadata)
            } else {
                try await verifyMetadata(metadata)
            }
        }
    }

    // MARK: Bookie

    func verifyBookie(_ target: String) async throws {
        let (host, port) = try parseTarget(target)
        guard let text = try? String(contentsOfFile: ackedLog, encoding: .utf8) else {
            throw ValidationError("cannot read --acked-log \(ackedLog)")
        }
        let client = try await BookieClient.connect(host: host, port: port)
        defer { Task { await client.close() } }
        var checked = 0
        for (n, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: " ")
            guard f.count == 3, let l = UInt64(f[0]), let e = Int64(f[1]), let crc = UInt32(f[2]) else {
                throw BenchError("\(ackedLog):\(n + 1): expected 'ledger entry crc', found '\(line)'")
            }
            let bytes: [UInt8]
            do {
                bytes = try await client.read(ledger: LedgerID(l), entry: EntryID(e))
            } catch {
                print("BAD \(l)/\(e): read failed: \(error)")
                throw ExitCode(1)
            }
            do {
                let header = try EntryCodec.validate(bytes)
                let stored = bytes.withUnsafeBytes { $0.loadBigEndian(UInt32.self, at: 32) }
                guard header.ledger.rawValue == l, header.entry.rawValue == e, stored == crc else {
                    print("BAD \(l)/\(e): bookie returned \(header.ledger)/\(header.entry) crc \(stored), expected crc \(crc)")
                    throw ExitCode(1)
                }
            } catch let error as EntryError {
                print("BAD \(l)/\(e): \(error)")
                throw ExitCode(1)
            }
            checked += 1
        }
        print("verified \(checked) acknowledged entries: all present and intact")
    }

    // MARK: Metadata

    /// Every key's highest acknowledged update must still be there: at that version with that value, or
    /// overwritten by a later version. Reads the whole log before touching the store, so a malformed line is
    /// reported before anything else.
    func verifyMetadata(_ uriText: String) async throws {
        let uri = try MetadataURI(parsing: uriText)  // checked in validate()
        let log = try MetadataAckedLog(path: ackedLog)
        if let reused = log.reusedVersion {
            print("BAD \(reused.key): version \(reused.version) was acknowledged for two different values")
            throw ExitCode(1)
        }
        let store = try uri.connect(requestTimeout: Self.metadataRequestTimeout)
        let failure: String?
        do {
            failure = try await firstFailure(log, store: store)
        } catch {
            await store.shutdown()
            throw error
        }
        await store.shutdown()
        if let failure {
            print("BAD \(failure)")
            throw ExitCode(1)
        }
        print("verified \(log.updates) acknowledged updates over \(log.keys.count) keys: all present")
    }

    /// The first key, in log order, whose acknowledged update is gone; nil when none is.
    func firstFailure(_ log: MetadataAckedLog, store: any MetadataStore) async throws -> String? {
        for key in log.keys {
            let acknowledged = log.latest[key]!
            let current = try await Self.get(key, from: store)
            if let failure = Self.check(key, acknowledged: acknowledged, current: current) { return failure }
        }
        return nil
    }

    /// The decision for one key, without I/O.
    static func check(_ key: String, acknowledged: MetadataAckedLog.Latest, current: KeyValue?) -> String? {
        let expected = MetadataAck(key: key, version: acknowledged.version, crc: acknowledged.crc)
        guard let current else {
            return "\(key): acknowledged at version \(acknowledged.version) (crc \(expected.crcHex)), but the key is missing"
        }
        if current.version < acknowledged.version {
            return "\(key): acknowledged at version \(acknowledged.version), found version \(current.version)"
        }
        let found = MetadataAck(key: key, version: current.version, value: current.value)
        if current.version == acknowledged.version && found.crc != acknowledged.crc {
            return "\(key): version \(acknowledged.version) holds a value with crc \(found.crcHex), acknowledged crc \(expected.crcHex)"
        }
        return nil
    }

    /// Reads `key`, retrying for a bounded while when the store is unavailable (it may be restarting after a
    /// crash test); any other error ends the verification, since nothing can be concluded about the key.
    static func get(_ key: String, from store: any MetadataStore) async throws -> KeyValue? {
        let deadline = ContinuousClock.now + metadataUnavailableMax
        while true {
            do {
                return try await store.get(key)
            } catch let error as MetadataError where error.isRetryable {
                guard ContinuousClock.now < deadline else {
                    throw BenchError("reading \(key) failed for \(metadataUnavailableMax): \(error)")
                }
                try await Task.sleep(for: .milliseconds(200))
            } catch {
                throw BenchError("reading \(key) failed: \(error)")
            }
        }
    }
}
