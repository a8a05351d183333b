import DLogDaemon
import Testing

@Suite struct MetadataConfigTests {
    func metadataSettings(_ text: String) throws(ConfigFile.Problem) -> MetadataSettings {
        var s = MetadataSettings()
        try s.apply(try ConfigFile.parse(text, path: "/etc/dlog/metadata.conf", knownKeys: MetadataSettings.keys))
        return s
    }

    func bookieSettings(_ text: String) throws(ConfigFile.Problem) -> BookieSettings {
        var s = BookieSettings()
        try s.apply(try ConfigFile.parse(text, path: "/etc/dlog/bookie.conf", knownKeys: BookieSettings.keys))
        return s
    }

    @Test func shippedMetadataConfigParses() throws {
        // Proves etc/metadata.conf parses and documents the defaults the role uses.
        let path = String(#filePath).components(separatedBy: "/Tests/")[0] + "/etc/metadata.conf"
        let s = try metadataSettings(try String(contentsOfFile: path, encoding: .utf8))
        let defaults = MetadataSettings()
        #expect(s.port == defaults.port && s.port == 3180)
        #expect(s.historyRevisions == defaults.historyRevisions)
        #expect(s.dataDirectory == "/var/lib/dlog/metadata", "the packaged config keeps data where the unit may write")
    }

    @Test func badMetadataValuesAreNamedWithFileAndLine() {
        // Proves a wrong value names the file, line, key and what is allowed.
        #expect(throws: ConfigFile.Problem.self) { try metadataSettings("port = 70000") }
        do {
            _ = try metadataSettings("\nhistory_revisions = 5")
            Issue.record("history_revisions = 5 was accepted")
        } catch {
            #expect(error.message.contains("/etc/dlog/metadata.conf:2") && error.message.contains("history_revisions"))
        }
        #expect(throws: ConfigFile.Problem.self) { try metadataSettings("data_dir =") }
        #expect(throws: ConfigFile.Problem.self) { try metadataSettings("journal_dirs = /x") }
    }

    @Test func bookieMetadataKeysAreChecked() throws {
        // Proves the bookie's membership keys parse, and bad URIs, ids and a port-0 bookie without an id are
        // refused with the reason.
        let s = try bookieSettings("metadata = etcd://10.0.0.1:2379,10.0.0.2:2379/dlog\nbookie_id = b-1\nrack = /z/r\n")
        #expect(s.metadata == "etcd://10.0.0.1:2379,10.0.0.2:2379/dlog" && s.bookieID == "b-1" && s.rack == "/z/r")
        do {
            _ = try bookieSettings("metadata = zk://host:2181")
            Issue.record("a zk:// URI was accepted")
        } catch {
            #expect(error.message.contains("unknown scheme"))
        }
        #expect(throws: ConfigFile.Problem.self) { try bookieSettings("bookie_id = a/b") }
        do {
            _ = try bookieSettings("metadata = dlog://127.0.0.1:3180\nport = 0")
            Issue.record("port 0 without bookie_id was accepted")
        } catch {
            #expect(error.message.contains("bookie_id"))
        }
    }
}
