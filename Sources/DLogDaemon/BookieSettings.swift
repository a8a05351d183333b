import DLogBookie
import DLogIO
import DLogMetadata
import DLogWire

/// Every setting of the bookie role, with its default, the key that sets it, and its check.
public struct BookieSettings: Sendable {
    public var journalDirectories = ["./data/journal"]
    public var ledgerDirectories = ["./data/ledgers"]
    public var host = "127.0.0.1"
    public var port = 3181
    public var journalEngine = EngineChoice.auto
    public var journalSync = SyncMode.dsync
    /// `journal_sync = auto` (the default): the mode measured faster for the engine chosen, set by
    /// `resolveJournalSync(for:)` once the engine is known.
    public var journalSyncAuto = true
    public var groupWaitMicros = 1000
    public var groupBytes = 512 * 1024
    public var journalMaxInFlight = 1
    /// How long the journal writer polls for the next add after a completion before it sleeps (0: never).
    public var journalSpinMicros = 50
    public var journalFileBytes = 64 << 20
    public var journalFilesMax = 8
    public var journalQueueEntries = 100_000
    /// 64 MiB: the same throughput and CPU per add as 256 MiB or 1 GiB in scripts/bench-bookie.sh, at a third of
    /// the RSS (docs/storage.md, "What memory buys").
    public var writeCacheBytes = 64 << 20
    /// Shards of the ledger state and write cache, each under a lock of its own (see `LedgerShards`).
    public var writeCacheShards = LedgerStorage.Configuration.defaultShards
    public var checkpointIntervalMillis = 10_000
    public var diskUsageThreshold = 0.95
    public var diskUsageLowWater = 0.90
    public var allowSharedDevice = false
    public var maxFrameBytes = 5 << 20
    public var ioThreads = 2
    public var compactionThreshold = 0.5
    public var compactionRateBytes = 32 << 20
    /// The metadata store (`dlog://...` or `etcd://...`); nil runs the bookie alone.
    public var metadata: String?
    /// The address clients reach this bookie at, registered in metadata; `host` when not set.
    public var advertisedHost: String?
    /// The bookie's id in the cluster; "advertised host:port" when not set.
    public var bookieID: String?
    /// Placement label, e.g. "/zone-a/rack-3".
    public var rack = ""
    public var registrationTTLSeconds = 10
    public var gcIntervalMillis = 60_000
    /// The admin socket's path (`dlogctl admin`); nil: /run/dlog/INSTANCE.sock when /run/dlog exists.
    public var adminSocket: String?
    /// Prometheus metrics over HTTP on this port (`host`); nil: none.
    public var metricsPort: Int?
    /// Records the request, journal and replication latency histograms; false records none (the counters and
    /// gauges stay), for measuring what recording costs (scripts/bench-metrics.sh).
    public var latencyHistograms = true
    /// TLS on the port and on the role's own connections (docs/security.md).
    public var tls = TLSSettings()
    /// What the port lets each client hold, and how long.
    public var connections = ConnectionSettings()
    /// Application principals that may use ledgers on this bookie directly, with TLS required (docs/security.md).
    public var ledgerClients: [String] = []
    /// Healing (docs/recovery.md): this bookie stands for auditor and runs a replication worker.
    public var autorecovery = true
    public var lostBookieGraceSeconds = 60
    public var auditIntervalSeconds = 6 * 3600
    public var replicationRateBytes = 16 << 20
    public var replicationEntriesInFlight = 256
    public var openLedgerGraceSeconds = 30
    /// Scrub: re-read every stored entry at this rate, a full pass every `scrubIntervalSeconds` (0: never).
    public var scrubRateBytes = 16 << 20
    public var scrubIntervalSeconds = 7 * 86_400

    public init() {}

    public static let keys: Set<String> = ([
        "journal_dirs", "ledger_dirs", "host", "port", "journal_engine", "journal_sync", "journal_group_wait_us",
        "journal_group_bytes", "journal_max_in_flight", "journal_file_bytes", "journal_files_max", "journal_queue_entries",
        "journal_spin_us",
        "write_cache_bytes", "write_cache_shards", "checkpoint_interval_ms", "disk_usage_threshold", "disk_usage_lwm",
        "allow_shared_device", "max_frame_bytes", "io_threads", "compaction_threshold", "compaction_rate_bytes",
        "metadata", "bookie_id", "rack", "registration_ttl_s", "gc_interval_ms", "advertised_host", "admin_socket",
        "metrics_port", "latency_histograms", "role", "log_level", "autorecovery", "lost_bookie_grace_s", "audit_interval_s",
        "replication_rate_bytes", "replication_entries_in_flight", "open_ledger_grace_s", "scrub_rate_bytes",
        "scrub_interval_s",
    ] as Set<String>).union(TLSSettings.keys).union(ConnectionSettings.keys).union(["ledger_clients"])

    /// Applies a config file over the defaults, checking every value.
    public mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem) {
        func v(_ key: String) -> String? { file.string(key) }
        func bad(_ key: String, _ allowed: String) -> ConfigFile.Problem { file.problem(key, allowed: allowed) }
        func int(_ key: String, _ range: ClosedRange<Int>) throws(ConfigFile.Problem) -> Int? { try file.int(key, range) }
        func fraction(_ key: String) throws(ConfigFile.Problem) -> Double? { try file.fraction(key) }
        func dirs(_ key: String) throws(ConfigFile.Problem) -> [String]? {
            try file.list(key, allowed: "a comma-separated list of distinct directories")
        }
        if let d = try dirs("journal_dirs") { journalDirectories = d }
        if let d = try dirs("ledger_dirs") { ledgerDirectories = d }
        if let h = v("host") {
            guard !h.isEmpty else { throw bad("host", "an address or host name") }
            host = h
        }
        if let p = try int("port", 0...65535) { port = p }
        if let e = v("journal_engine") {
            guard let c = EngineChoice(rawValue: e) else { throw bad("journal_engine", "auto, io_uring, libaio, blocking") }
            journalEngine = c
        }
        if let s = v("journal_sync") {
            if s == "auto" {
                journalSyncAuto = true
            } else {
                guard let m = SyncMode(rawValue: s) else { throw bad("journal_sync", "auto, fdatasync, dsync") }
                journalSync = m
                journalSyncAuto = false
            }
        }
        if let n = try int("journal_group_wait_us", 0...1_000_000) { groupWaitMicros = n }
        if let n = try int("journal_group_bytes", 4096...(64 << 20)) { groupBytes = n }
        if let n = try int("journal_max_in_flight", 1...8) { journalMaxInFlight = n }
        if let n = try int("journal_file_bytes", (1 << 20)...(1 << 32)) {
            guard n % 4096 == 0 else { throw bad("journal_file_bytes", "a multiple of 4096") }
            journalFileBytes = n
        }
        if let n = try int("journal_files_max", 2...1024) { journalFilesMax = n }
        if let n = try int("journal_queue_entries", 1...10_000_000) { journalQueueEntries = n }
        if let n = try int("journal_spin_us", 0...1000) { journalSpinMicros = n }
        if let n = try int("write_cache_bytes", (1 << 20)...(1 << 40)) { writeCacheBytes = n }
        if let n = try int("write_cache_shards", 1...LedgerStorage.Configuration.shardsMax) { writeCacheShards = n }
        if let n = try int("checkpoint_interval_ms", 100...3_600_000) { checkpointIntervalMillis = n }
        if let f = try fraction("disk_usage_threshold") { diskUsageThreshold = f }
        if let f = try fraction("disk_usage_lwm") { diskUsageLowWater = f }
        if let b = v("allow_shared_device") {
            guard b == "true" || b == "false" else { throw bad("allow_shared_device", "true, false") }
            allowSharedDevice = b == "true"
        }
        if let n = try int("max_frame_bytes", 4096...(256 << 20)) { maxFrameBytes = n }
        if let n = try int("io_threads", 1...64) { ioThreads = n }
        if let f = try fraction("compaction_threshold") { compactionThreshold = f }
        if let n = try int("compaction_rate_bytes", (1 << 20)...(4 << 30)) { compactionRateBytes = n }
        if let m = try file.nonEmpty("metadata", allowed: "dlog://host:port[,host:port] or etcd://host:port[,host:port]/prefix") {
            do { _ = try MetadataURI(parsing: m) } catch { throw ConfigFile.Problem(message: "\(file.location("metadata")): \(error)") }
            metadata = m
        }
        if let a = try file.nonEmpty("admin_socket", allowed: "a socket path") { adminSocket = a }
        try tls.apply(file)
        try connections.apply(file)
        if let names = try file.list("ledger_clients", allowed: "a comma-separated list of principal names") { ledgerClients = names }
        if let named = file.string("role"), named != "bookie" {
            throw file.problem("role", allowed: "bookie (this is the bookie role's config; run `dlogd --config FILE` to start the role a file names)")
        }
        if let p = try file.int("metrics_port", 0...65535) { metricsPort = p }
        if let b = v("bookie_id") {
            if let problem = BookieID(b).problem { throw bad("bookie_id", problem) }
            bookieID = b
        }
        if let r = v("rack") { rack = r }
        if let a = try file.nonEmpty("advertised_host", allowed: "the address or host name clients connect to") {
            advertisedHost = a
        }
        if let n = try int("registration_ttl_s", 2...300) { registrationTTLSeconds = n }
        if let n = try int("gc_interval_ms", 100...86_400_000) { gcIntervalMillis = n }
        if let b = try file.bool("autorecovery") { autorecovery = b }
        if let b = try file.bool("latency_histograms") { latencyHistograms = b }
        if let n = try int("lost_bookie_grace_s", 1...86_400 * 30) { lostBookieGraceSeconds = n }
        if let n = try int("audit_interval_s", 1...86_400 * 365) { auditIntervalSeconds = n }
        if let n = try int("replication_rate_bytes", 0...(16 << 30)) { replicationRateBytes = n }
        if let n = try int("replication_entries_in_flight", 1...1024) { replicationEntriesInFlight = n }
        if let n = try int("open_ledger_grace_s", 1...86_400) { openLedgerGraceSeconds = n }
        if let n = try int("scrub_rate_bytes", (64 << 10)...(16 << 30)) { scrubRateBytes = n }
        if let n = try int("scrub_interval_s", 0...86_400 * 365) { scrubIntervalSeconds = n }
        try check()
    }

    /// Checks that hold between settings, whatever set them.
    public func check() throws(ConfigFile.Problem) {
        guard diskUsageLowWater <= diskUsageThreshold else {
            throw ConfigFile.Problem(message: "disk_usage_lwm (\(diskUsageLowWater)) must not exceed "
                                         + "disk_usage_threshold (\(diskUsageThreshold))")
        }
        guard groupBytes < journalFileBytes / 2 else {
            throw ConfigFile.Problem(message: "journal_group_bytes (\(groupBytes)) must be under half of "
                                         + "journal_file_bytes (\(journalFileBytes))")
        }
        guard maxFrameBytes + 8192 < journalFileBytes / 2 else {
            throw ConfigFile.Problem(message: "max_frame_bytes (\(maxFrameBytes)) must be well under half of "
                                         + "journal_file_bytes (\(journalFileBytes))")
        }
        if metadata != nil && bookieID == nil && port == 0 {
            throw ConfigFile.Problem(message: "with metadata set, give the bookie a fixed port or a bookie_id: with port 0 "
                                         + "it would get a new id (host:port) at every start")
        }
        if metadata != nil && advertisedHost == nil && ["0.0.0.0", "::", "[::]"].contains(host) {
            throw ConfigFile.Problem(message: "host = \(host) listens everywhere, which is no address to register in "
                                         + "metadata; set advertised_host to the address clients should connect to")
        }
        let overlap = Set(journalDirectories).intersection(ledgerDirectories)
        guard overlap.isEmpty else {
            throw ConfigFile.Problem(message: "directory \(overlap.sorted()[0]) is both a journal and a ledger directory")
        }
    }

    /// The address registered in metadata and the default bookie id.
    public func advertisedAddress(port: Int) -> String { "\(advertisedHost ?? host):\(port)" }

    /// The bookie configuration these settings describe.
    /// With `journal_sync = auto`: an O_DIRECT write with RWF_DSYNC on io_uring and the blocking engine, a write
    /// then an asynchronous fdatasync on libaio, each the faster in throughput summed over several runs of
    /// scripts/bench-matrix.sh on this project's test disk (the margins, small on libaio, are in the README).
    public mutating func resolveJournalSync(for engine: EngineChoice) {
        guard journalSyncAuto else { return }
        journalSync = engine == .libaio ? .fdatasync : .dsync
    }

    public func bookieConfiguration(engine: EngineChoice, truncateCorrupt: Bool) -> Bookie.Configuration {
        var journal = Journal.Configuration(
            directory: journalDirectories[0], fileBytes: journalFileBytes, filesMax: journalFilesMax,
            policy: .init(groupWaitMax: .microseconds(groupWaitMicros), bufferedBytesMax: groupBytes,
                          maxInFlight: journalMaxInFlight),
            queueCountMax: journalQueueEntries, engine: engine, syncMode: journalSync, recordBytesMax: maxFrameBytes)
        journal.spinMax = .microseconds(journalSpinMicros)
        var config = Bookie.Configuration(journal: journal, journalDirectories: journalDirectories,
                                          storage: .init(ledgerDirectories: ledgerDirectories,
                                                         writeCacheBytes: writeCacheBytes, shards: writeCacheShards))
        config.checkpointInterval = .milliseconds(checkpointIntervalMillis)
        config.diskUsageThreshold = diskUsageThreshold
        config.diskUsageLowWater = diskUsageLowWater
        config.truncateCorruptJournal = truncateCorrupt
        config.compactionThreshold = compactionThreshold
        config.compactionBytesPerSecond = compactionRateBytes
        return config
    }
}
