import DLogTestSupport
import Foundation
import Testing

/// The Grafana dashboard the package ships (packaging/grafana/dlogd-dashboard.json).
@Suite struct DashboardTests {
    static func dashboard() throws -> [String: Any] {
        let path = String(#filePath).components(separatedBy: "/Tests/")[0] + "/packaging/grafana/dlogd-dashboard.json"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func everyPanelQueriesSeriesTheRolesServe() throws {
        // Proves each panel asks Prometheus only for series docs/metrics.md lists (what the roles serve; a
        // standalone's test holds the document against a scrape), a histogram through its _bucket, _sum or
        // _count, and that the panels the issue asks for are there: a renamed or dropped series fails here,
        // before an operator finds an empty panel.
        let documented = try MetricsDoc.families()
        let panels = try #require(try Self.dashboard()["panels"] as? [[String: Any]])
        var titles: [String] = []
        var queried: Set<String> = []
        let pattern = try NSRegularExpression(pattern: "dlog_[a-z_]+")
        for panel in panels where panel["type"] as? String != "row" {
            let title = panel["title"] as? String ?? "?"
            titles.append(title)
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "panel '\(title)' has no query")
            for target in targets {
                let expr = try #require(target["expr"] as? String)
                for match in pattern.matches(in: expr, range: NSRange(expr.startIndex..., in: expr)) {
                    let name = String(expr[Range(match.range, in: expr)!])
                    var family = name
                    for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                        let base = String(name.dropLast(suffix.count))
                        if documented[base] == "histogram" { family = base }
                    }
                    #expect(documented[family] != nil, "panel '\(title)' asks for \(name), which no role serves")
                    if documented[family] == "histogram" {
                        #expect(family != name, "panel '\(title)' asks for histogram \(name) without _bucket, _sum or _count")
                    }
                    queried.insert(family)
                }
            }
        }
        for wanted in ["dlog_bookie_adds_total", "dlog_bookie_request_duration_seconds", "dlog_journal_sync_duration_seconds",
                       "dlog_journal_batch_records", "dlog_bookie_disk_used_ratio", "dlog_bookie_read_only",
                       "dlog_proxy_streams_owned", "dlog_proxy_request_duration_seconds", "dlog_metadata_request_duration_seconds",
                       "dlog_recovery_under_replicated_ledgers", "dlog_recovery_entries_copied_total"] {
            #expect(queried.contains(wanted), "no panel shows \(wanted)")
        }
        #expect(Set(titles).count == titles.count, "two panels share a title")
    }
}
