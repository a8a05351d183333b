import DLogDaemon
import DLogTestSupport
import Foundation
import Testing

/// `dlogctl top`: the figures it computes from two scrapes, and the view of a live standalone it prints.
@Suite(.serialized) struct TopTests {
    @Test func ratesAndPercentilesComeFromWhatTheCountersAndBucketsGained() {
        // Proves rates divide what counters gained by the interval, a restarted counter counts from 0, and p99
        // interpolates within the bucket it falls in over the observations between the scrapes only (the 1,000
        // fast ones before the first scrape do not count), for one labelled part's series only.
        let before = Exposition("""
            # TYPE x_total counter
            x_total{bookie="a"} 100
            x_total{bookie="b"} 7
            # TYPE d_seconds histogram
            d_seconds_bucket{bookie="a",le="0.001"} 1000
            d_seconds_bucket{bookie="a",le="0.01"} 1000
            d_seconds_bucket{bookie="a",le="+Inf"} 1000
            d_seconds_sum{bookie="a"} 0.5
            d_seconds_count{bookie="a"} 1000
            """)
        let after = Exposition("""
            # TYPE x_total counter
            x_total{bookie="a"} 300
            x_total{bookie="b"} 2
            # TYPE d_seconds histogram
            d_seconds_bucket{bookie="a",le="0.001"} 1000
            d_seconds_bucket{bookie="a",le="0.01"} 1100
            d_seconds_bucket{bookie="a",le="+Inf"} 1100
            d_seconds_sum{bookie="a"} 1.0
            d_seconds_count{bookie="a"} 1100
            d_seconds_bucket{bookie="b",le="0.001"} 50
            d_seconds_bucket{bookie="b",le="0.01"} 50
            d_seconds_bucket{bookie="b",le="+Inf"} 50
            d_seconds_sum{bookie="b"} 0.01
            d_seconds_count{bookie="b"} 50
            """)
        #expect(before.problems.isEmpty && after.problems.isEmpty, "\(before.problems) \(after.problems)")
        let a = ExpositionDelta(status: "ok", before: before, after: after, labels: ["bookie": "a"], seconds: 2)
        #expect(a.rate("x_total") == 100)
        // 100 observations, all in (1 ms, 10 ms]: the 99th is 99% of the way through that bucket.
        #expect(a.p99Ms("d_seconds") == 9.91)
        let b = ExpositionDelta(status: "ok", before: before, after: after, labels: ["bookie": "b"], seconds: 2)
        #expect(b.rate("x_total") == 1, "went back from 7 to 2: restarted, so 2 over 2 s")
        #expect(b.p99Ms("d_seconds") == 0.99)
        #expect(ExpositionDelta(status: "ok", before: after, after: after, labels: ["bookie": "a"]).p99Ms("d_seconds") == nil,
                "nothing observed between the scrapes")
        #expect(ExpositionDelta.quantile(0.99, [(0.001, 0), (.infinity, 10)]) == 0.001, "in the +Inf bucket: the highest bound")
    }

    @Test func topShowsEveryPartOfALoadedStandalone() async throws {
        // Proves `dlogctl top --once --json` finds every part of a standalone through metadata (their metrics
        // endpoints under /monitoring/), scrapes the shared port, tells the bookies apart by label, and shows
        // live figures while dlog-bench writes (two writers, one write in flight each: a light load beside the
        // other tests); and that the table form shows the same parts.
        let dir = TempDir("dlog-top")
        let (daemon, base) = try await StandaloneTests.start(in: dir)
        defer { daemon.kill(SIGKILL) }
        let metadata = ["--metadata", "dlog://127.0.0.1:\(base)"]
        async let load = BenchRun(["log", "--proxy", "127.0.0.1:\(base + 10)"] + metadata
                                  + ["--streams", "2", "--clients", "2", "--duration", "6", "--no-tail", "--json"], in: dir, timeout: 120)
        try await Task.sleep(for: .seconds(2))
        let top = try await runTool(dlogctlPath, ["top", "--once", "--json", "--interval", "2"] + metadata)
        let table = try await runTool(dlogctlPath, ["top", "--once", "--interval", "0.5"] + metadata)
        let bench = try await load
        #expect(bench.status == 0, "\(bench.stdout)\(bench.stderr)")
        #expect(top.status == 0, "\(top.stdout)\(top.stderr)")
        let view = try #require(try JSONSerialization.jsonObject(with: Data(top.stdout.utf8)) as? [String: Any], "\(top.stdout)")

        let bookies = view["bookies"] as? [[String: Any]] ?? []
        #expect(bookies.compactMap { $0["id"] as? String } == ["bookie-0", "bookie-1", "bookie-2"], "\(top.stdout)")
        for bookie in bookies {
            #expect(bookie["state"] as? String == "writable" && bookie["metrics"] as? String == "ok", "\(bookie)")
            #expect((bookie["adds_per_second"] as? Double ?? 0) > 0, "\(bookie)")
            #expect((bookie["add_p99_ms"] as? Double ?? 0) > 0 && (bookie["sync_p99_ms"] as? Double ?? 0) > 0, "\(bookie)")
            let used = bookie["disk_used_ratio"] as? Double ?? -1
            #expect(used > 0 && used <= 1, "\(bookie)")
        }
        let proxies = view["proxies"] as? [[String: Any]] ?? []
        #expect(proxies.count == 1, "\(top.stdout)")
        if let proxy = proxies.first {
            #expect(proxy["id"] as? String == "standalone" && proxy["address"] as? String == "127.0.0.1:\(base + 10)", "\(proxy)")
            #expect((proxy["streams"] as? Double ?? 0) >= 2 && (proxy["writes_per_second"] as? Double ?? 0) > 0, "\(proxy)")
            #expect((proxy["write_p99_ms"] as? Double ?? 0) > 0 && proxy["failures_per_second"] as? Double == 0, "\(proxy)")
        }
        let store = view["metadata"] as? [String: Any] ?? [:]
        #expect((store["round_trip_ms"] as? Double ?? 0) > 0, "\(store)")
        let servers = store["servers"] as? [[String: Any]] ?? []
        #expect(servers.count == 1 && (servers.first?["requests_per_second"] as? Double ?? 0) > 0
                && (servers.first?["leases"] as? Double ?? 0) > 0, "\(servers)")

        #expect(table.status == 0 && table.stdout.contains("BOOKIES (3)") && table.stdout.contains("PROXIES (1)")
                && table.stdout.contains("bookie-2") && table.stdout.contains("ADDS/S"), "\(table.stdout)\(table.stderr)")
        let unreachable = try await runTool(dlogctlPath, ["top", "--once", "--metadata", "dlog://127.0.0.1:1"])
        #expect(unreachable.status == 1 && unreachable.stderr.contains("the metadata store does not answer"), "\(unreachable.stderr)")
        daemon.kill(SIGTERM)
        #expect(await daemon.exited() == 0, "clean stop: \(daemon.stderr)")
    }
}
