import DLogDaemon
import Testing

@Suite struct ProxyConfigTests {
    func proxySettings(_ text: String) throws(ConfigFile.Problem) -> ProxySettings {
        var s = ProxySettings()
        try s.apply(try ConfigFile.parse(text, path: "/etc/dlog/proxy.conf", knownKeys: ProxySettings.keys))
        return s
    }

    @Test func shippedProxyConfigParsesToTheDefaults() throws {
        // Proves etc/proxy.conf parses and documents the defaults the role uses.
        let path = String(#filePath).components(separatedBy: "/Tests/")[0] + "/etc/proxy.conf"
        let s = try proxySettings(try String(contentsOfFile: path, encoding: .utf8))
        let defaults = ProxySettings()
        #expect(s.port == defaults.port && s.port == 3190 && s.metadata == defaults.metadata)
        #expect(s.streamsMax == defaults.streamsMax && s.limits == defaults.limits)
        #expect(s.log.quorums == defaults.log.quorums && s.log.segmentBytesMax == defaults.log.segmentBytesMax)
        #expect(s.log.retentionAge == defaults.log.retentionAge && s.log.ownershipLeaseSeconds == defaults.log.ownershipLeaseSeconds)
    }

    @Test func badProxyValuesAreNamed() throws {
        let s = try proxySettings("stream_records_hard = 500\ncompression = lz4\nretention_hours = 0\nproxy_id = p-1\n")
        #expect(s.limits.streamRecordsHard == 500 && s.log.compression == .lz4 && s.log.retentionAge == nil && s.proxyID == "p-1")
        do {
            _ = try proxySettings("ensemble = 2\nwrite_quorum = 3\n")
            Issue.record("impossible quorums accepted")
        } catch {
            #expect(error.message.contains("ensemble ≥ write_quorum ≥ ack_quorum"))
        }
        #expect(throws: ConfigFile.Problem.self) { try proxySettings("compression = zstd") }
        #expect(throws: ConfigFile.Problem.self) { try proxySettings("proxy_id = a/b") }
        #expect(throws: ConfigFile.Problem.self) { try proxySettings("metadata = http://x") }
        #expect(throws: ConfigFile.Problem.self) { try proxySettings("journal_dirs = /x") }
    }
}
