import ArgumentParser
import DLogMetadata
import DLogWire
import Foundation

struct RecoveryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recovery", abstract: "Healing: the auditor, lost bookies, under-replicated ledgers, copy progress.",
        subcommands: [Status.self, Audit.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Cluster-wide healing status (samples the copy rate over one second).")
        @OptionGroup var options: MetadataOption
        @Flag(help: "One JSON object instead of lines.") var json = false

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                let report = try await RecoveryReport.gather(cluster)
                print(json ? report.json : report.text)
            }
            await cluster.store.shutdown()
        }
    }

    struct Audit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "audit", abstract: "Ask the auditor to compare every closed ledger with what its bookies hold, now.")
        @OptionGroup var options: MetadataOption
        @Flag(help: "One JSON object instead of a line.") var json = false

        func run() async throws {
            let cluster = try options.cluster()
            try await reportingErrors {
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                _ = try await cluster.store.commit(Transaction(operations: [
                    .put(key: RecoveryKeys.auditRequest, value: Array(String(now).utf8), lease: nil)]))
                let auditor = try await cluster.auditor()
                if json {
                    print(LedgerView.encode(["requested_ms": now, "auditor": auditor?.bookie.rawValue as Any? ?? NSNull()]))
                } else if let auditor {
                    print("audit requested: auditor \(auditor.bookie) starts it within a second; `dlogctl recovery status` shows what it marks")
                } else {
                    print("audit requested, but no auditor is elected (no bookie runs with autorecovery = true); it runs once one is")
                }
            }
            await cluster.store.shutdown()
        }
    }
}

/// What `recovery status` shows, gathered from metadata alone.
struct RecoveryReport {
    var auditor: String?
    var lost: [(BookieID, Int64)] = []
    var retiring: [(BookieID, RetiringBookie)] = []
    var missing: [BookieID] = []
    var ledgers = 0
    var bytes: UInt64 = 0
    var oldestMark: Int64?
    var reasons: [String: Int] = [:]
    var copiedBytes: Int64 = 0
    var ratePerSecond: Double = 0
    var copyErrors: Int64 = 0
    var workers = 0
    var waiting: [String] = []

    static func gather(_ cluster: Cluster) async throws -> RecoveryReport {
        var r = RecoveryReport()
        r.auditor = try await cluster.auditor()?.bookie.rawValue
        let lost = try await cluster.lostBookies()
        r.lost = lost.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        r.retiring = try await cluster.retiringBookies().sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let registered = Set(try await cluster.bookies().map(\.id))
        r.missing = try await cluster.knownBookies().subtracting(registered).subtracting(lost.keys).sorted()
        var marked: [LedgerID] = []
        try await cluster.forEachMarked { id, marks, _ in
            marked.append(id)
            for mark in marks.marks { r.reasons[mark.reason.rawValue, default: 0] += 1 }
            if let oldest = marks.oldest { r.oldestMark = min(r.oldestMark ?? oldest, oldest) }
        }
        r.ledgers = marked.count
        for id in marked { r.bytes += try await cluster.ledger(id)?.metadata.length ?? 0 }
        let before = try await cluster.workerProgress()
        try await Task.sleep(for: .seconds(1))
        let after = try await cluster.workerProgress()
        r.workers = after.count
        r.copiedBytes = after.reduce(0) { $0 + $1.bytesCopied }
        r.copyErrors = after.reduce(0) { $0 + $1.copyErrors }
        // Each worker publishes about once a second: its own change over its own interval.
        for worker in after {
            guard let old = before.first(where: { $0.bookie == worker.bookie }), worker.updatedAt > old.updatedAt else { continue }
            r.ratePerSecond += Double(worker.bytesCopied - old.bytesCopied) * 1000 / Double(worker.updatedAt - old.updatedAt)
        }
        r.waiting = Array(Set(after.compactMap(\.waiting).flatMap { $0.split(separator: "\n").map(String.init) })).sorted()
        return r
    }

    var oldestAgeSeconds: Int64? { oldestMark.map { max(0, (Int64(Date().timeIntervalSince1970 * 1000) - $0) / 1000) } }
    var etaSeconds: Int64? { ratePerSecond > 0 ? Int64(Double(bytes) / ratePerSecond) : nil }

    var text: String {
        var lines = ["auditor: \(auditor ?? "none elected (no bookie runs with autorecovery = true)")"]
        lines.append("lost bookies: " + (lost.isEmpty ? "none" : lost.map { "\($0.0) (since \(Self.time($0.1)))" }.joined(separator: ", ")))
        if !missing.isEmpty {
            lines.append("missing (within lost_bookie_grace_s): " + missing.map(\.rawValue).joined(separator: ", "))
        }
        if !retiring.isEmpty {
            lines.append("retiring: " + retiring.map { "\($0.0) (\($0.1.drain ? "drain" : "decommission"))" }.joined(separator: ", "))
        }
        var under = "under-replicated ledgers: \(ledgers), \(ByteCount(Int64(bytes)))"
        if !reasons.isEmpty { under += " (marks: " + reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")" }
        lines.append(under)
        if let age = oldestAgeSeconds { lines.append("oldest mark: \(age) s old") }
        lines.append("copying: \(ByteCount(Int64(ratePerSecond)))/s by \(workers) worker(s), \(ByteCount(copiedBytes)) copied since they started, \(copyErrors) copy error(s); ETA \(etaSeconds.map { "\($0) s" } ?? "-")")
        for why in waiting { lines.append("waiting: \(why)") }
        return lines.joined(separator: "\n")
    }

    var json: String {
        var object: [String: Any] = [
            "auditor": auditor as Any? ?? NSNull(),
            "lost_bookies": lost.map { ["bookie": $0.0.rawValue, "since_ms": $0.1] as [String: Any] },
            "missing_bookies": missing.map(\.rawValue),
            "retiring_bookies": retiring.map { ["bookie": $0.0.rawValue, "drain": $0.1.drain, "since_ms": $0.1.since] as [String: Any] },
            "under_replicated_ledgers": ledgers, "under_replicated_bytes": bytes, "marks_by_reason": reasons,
            "copy_rate_bytes_per_second": Int64(ratePerSecond), "bytes_copied": copiedBytes, "copy_errors": copyErrors,
            "workers": workers, "waiting": waiting,
        ]
        object["oldest_mark_age_s"] = oldestAgeSeconds as Any? ?? NSNull()
        object["eta_s"] = etaSeconds as Any? ?? NSNull()
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    static func time(_ ms: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}
