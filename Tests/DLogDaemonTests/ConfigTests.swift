import DLogDaemon
import DLogIO
import Testing

@Suite struct ConfigTests {
    func settings(_ text: String) throws(ConfigFile.Problem) -> BookieSettings {
        var s = BookieSettings()
        try s.apply(try ConfigFile.parse(text, path: "/etc/dlog/bookie.conf", knownKeys: BookieSettings.keys))
        return s
    }

    /// The shipped default config parses and keeps every default it documents.
    @Test func shippedConfigParses() throws {
        let path = String(#filePath).components(separatedBy: "/Tests/")[0] + "/etc/bookie.conf"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let s = try settings(text)
        #expect(s.port == 3181)
        #expect(s.journalEngine == .auto)
        #expect(s.groupBytes == 512 * 1024)
        #expect(s.maxFrameBytes == 5 << 20)
        #expect(s.journalSpinMicros == 50)
        // One batch in flight: larger batches, measured faster for small adds (docs/storage.md, "Pipelining").
        #expect(s.journalMaxInFlight == 1)
        #expect(try settings("").journalMaxInFlight == 1)
    }

    /// Values are parsed with units and lists.
    @Test func valuesParse() throws {
        let s = try settings("""
            journal_dirs = /a, /b
            ledger_dirs = /c
            port = 4000  # comment
            journal_engine = blocking
            journal_sync = dsync
            write_cache_bytes = 128M
            write_cache_shards = 16
            disk_usage_threshold = 0.9
            disk_usage_lwm = 0.8
            journal_spin_us = 0
            """)
        #expect(s.journalDirectories == ["/a", "/b"])
        #expect(s.port == 4000)
        #expect(s.journalEngine == .blocking)
        #expect(s.journalSync == .dsync && !s.journalSyncAuto)
        #expect(s.writeCacheBytes == 128 << 20)
        #expect(s.writeCacheShards == 16)
        #expect(s.bookieConfiguration(engine: .blocking, truncateCorrupt: false).storage.shards == 16)
        #expect(s.bookieConfiguration(engine: .blocking, truncateCorrupt: false).journal.spinMax == .zero)
        // auto: the faster mode for the engine chosen; an explicit mode stays.
        var automatic = try settings("journal_sync = auto\n")
        automatic.resolveJournalSync(for: .libaio)
        #expect(automatic.journalSync == .fdatasync)
        automatic.resolveJournalSync(for: .ioUring)
        #expect(automatic.journalSync == .dsync)
        var fixed = s
        fixed.resolveJournalSync(for: .libaio)
        #expect(fixed.journalSync == .dsync)
    }

    /// Each mistake names the file and line, the key, the value and what is allowed.
    @Test(arguments: [
        ("port = 70000", ["bookie.conf:1", "'port'", "70000", "0 to 65535"]),
        ("journal_engine = fast", ["'journal_engine'", "fast", "auto, io_uring, libaio, blocking"]),
        ("colour = blue", ["unknown config key 'colour'"]),
        ("port 3181", ["expected 'key = value'"]),
        ("port = 1\nport = 2", ["already set on line 1"]),
        ("disk_usage_threshold = 2", ["'disk_usage_threshold'", "fraction"]),
        ("disk_usage_threshold = 0.5\ndisk_usage_lwm = 0.6", ["disk_usage_lwm", "must not exceed"]),
        ("journal_dirs = /x\nledger_dirs = /x", ["/x is both a journal and a ledger directory"]),
        ("journal_file_bytes = 1048577", ["a multiple of 4096"]),
        ("allow_shared_device = yes", ["true, false"]),
        ("autorecovery = maybe", ["'autorecovery'", "true, false"]),
        ("lost_bookie_grace_s = 0", ["'lost_bookie_grace_s'", "0"]),
        ("replication_entries_in_flight = 0", ["'replication_entries_in_flight'"]),
        ("scrub_rate_bytes = 1K", ["'scrub_rate_bytes'"]),
        ("write_cache_shards = 65", ["'write_cache_shards'", "65", "1 to 64"]),
        ("journal_spin_us = 5000", ["'journal_spin_us'", "5000", "0 to 1000"]),
    ])
    func badValuesAreNamed(text: String, fragments: [String]) {
        do {
            _ = try settings(text)
            Issue.record("accepted: \(text)")
        } catch {
            for f in fragments { #expect(error.message.contains(f), "\(error.message) lacks \(f)") }
        }
    }
}
