import DLogBookie
import DLogIO
import DLogWire
import Foundation

/// The bookie's own admin commands beyond info/readonly/checkpoint: disks, journal statistics, garbage
/// collection on demand, and a look at the ledgers it stores (list, info, read-entry).
enum BookieAdminCommands {
    static func register(_ socket: AdminSocket, _ bookie: Bookie, settings: BookieSettings,
                         membership: BookieMembership?) {
        socket.register("disks", help: "each journal and ledger directory: device, size, free, used, against the read-only threshold") { _ in
            disks(bookie, settings)
        }
        socket.register("journal", help: "each journal: engine, syncs, queue depth, batch sizes, and the sync latency histogram") { _ in
            journal(bookie, settings)
        }
        socket.register("gc", help: "delete now the local ledgers that metadata no longer has, and copies healing left behind, by listing every ledger's metadata (between listings GC follows metadata's changes)") { _ in
            guard let membership else {
                throw AdminSocket.Refusal("gc needs the cluster's metadata to tell deleted ledgers, and this bookie runs alone (no metadata key)")
            }
            let before = bookie.storage.ledgerCount
            let deleted = try runBlocking { try await membership.collectGarbage() }
            return ["ledgers_before": before, "deleted": deleted.map(\.description)]
        }
        socket.register("ledger", help: "ledger list | ledger info LEDGER | ledger read-entry LEDGER ENTRY: what this bookie stores") { args in
            try ledger(bookie, args)
        }
    }

    /// `scrub` starts a pass now (`dlogctl admin scrub` then follows it); `scrub status` only looks.
    static func register(_ socket: AdminSocket, _ scrubber: Scrubber) {
        socket.register("scrub", help: "scrub: start a pass now (re-read every stored entry, checking CRCs) | scrub status") { args in
            switch args.first {
            case nil:
                var answer = scrubber.describe()
                answer["started"] = scrubber.requestNow()
                return answer
            case "status": return scrubber.describe()
            default: throw AdminSocket.Refusal("scrub takes no argument (start a pass) or `status`")
            }
        }
    }

    static func disks(_ bookie: Bookie, _ settings: BookieSettings) -> [String: Any] {
        let all = settings.journalDirectories.map { ($0, "journal") } + settings.ledgerDirectories.map { ($0, "ledger") }
        let rows: [[String: Any]] = all.map { path, kind in
            var row: [String: Any] = ["path": path, "kind": kind]
            if let device = try? FileSystem.device(of: path) {
                // Linux's encoding of st_dev: major in bits 8-19 (and 32+), minor in bits 0-7 and 20-31.
                let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
                let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
                row["device"] = "\(major):\(minor)"
            }
            if let usage = try? FileSystem.usage(of: path) {
                row["total"] = bytes(usage.totalBytes)
                row["free"] = bytes(usage.freeBytes)
                row["used"] = "\(Int((usage.usedFraction * 100).rounded()))%"
            } else {
                row["used"] = "unreadable"
            }
            return row
        }
        let thresholds = bookie.diskThresholdsInForce
        return ["disks": rows, "read_only_above": "\(Int((thresholds.high * 100).rounded()))%",
                "writable_below": "\(Int((thresholds.low * 100).rounded()))%",
                "state": bookie.isReadOnly ? "read-only" : "writable"]
    }

    static func journal(_ bookie: Bookie, _ settings: BookieSettings) -> [String: Any] {
        var result: [String: Any] = [:]
        var rows: [[String: Any]] = []
        for (index, journal) in bookie.journals.enumerated() {
            let stats = journal.stats
            let directory = index < settings.journalDirectories.count ? settings.journalDirectories[index] : "?"
            rows.append(["journal": index, "directory": directory, "engine": stats.engine, "sync": stats.syncMode,
                         "syncs": stats.syncs, "records": stats.recordsSynced, "bytes": bytes(stats.bytesSynced),
                         "queue_depth": stats.queueDepth, "largest_batch": "\(stats.largestBatchRecords) / \(bytes(UInt64(stats.largestBatchBytes)))",
                         "refused_queue_full": stats.rejectedQueueFull, "waits_for_free_file": stats.waitsForFreeFile,
                         "spins": "\(stats.spins) (\(stats.spinsThatFoundWork) found an add)",
                         "failed": stats.failed ?? "-"])
            result["j\(index)_sync_latency"] = histogram(stats.syncLatencyBuckets) { i in
                i == stats.syncLatencyBuckets.count - 1 ? "longer" : "< " + micros(16 << i)
            }
            result["j\(index)_batch_records"] = histogram(stats.batchRecordBuckets) { i in
                i == stats.batchRecordBuckets.count - 1 ? "more" : "< \(2 << i)"
            }
            result["j\(index)_batch_bytes"] = histogram(stats.batchBytesBuckets) { i in
                i == stats.batchBytesBuckets.count - 1 ? "more" : "< " + bytes(UInt64(4096 << (i + 1)))
            }
        }
        result["journals"] = rows
        return result
    }

    static func ledger(_ bookie: Bookie, _ args: [String]) throws -> Any {
        switch args.first {
        case "list":
            let ids = bookie.storage.ledgerIDs
            let shown = ids.prefix(1000).compactMap { id -> [String: Any]? in
                bookie.storage.ledgerState(id).map { describe(id, $0) }
            }
            return ["ledgers": shown, "count": ids.count, "more": ids.count > shown.count]
        case "info":
            guard args.count == 2 else { throw AdminSocket.Refusal("ledger info takes a ledger id (e.g. L42 or 42)") }
            let id = try ledgerID(args[1])
            guard let state = bookie.storage.ledgerState(id) else { throw AdminSocket.Refusal("\(id) is not on this bookie") }
            return describe(id, state)
        case "read-entry":
            guard args.count == 3 else { throw AdminSocket.Refusal("ledger read-entry takes a ledger id and an entry id (e.g. L42 0)") }
            let id = try ledgerID(args[1])
            guard let entry = Int64(args[2]), entry >= 0 else {
                throw AdminSocket.Refusal("entry id '\(args[2])' is not a non-negative number")
            }
            switch bookie.readEntryBlocking(ledger: id, entry: EntryID(entry)) {
            case .entry(let bytes):
                let header = try EntryCodec.validate(bytes)
                let payload = Array(bytes[EntryHeader.byteCount...])
                var result: [String: Any] = ["ledger": id.description, "entry": entry,
                                             "last_add_confirmed": header.lastAddConfirmed.rawValue,
                                             "ledger_length": header.ledgerLength, "payload_bytes": payload.count,
                                             "crc": "ok"]
                let shown = Array(payload.prefix(4096))
                if let text = String(bytes: shown, encoding: .utf8), !text.contains(where: { $0.isASCII && $0.asciiValue! < 32 && $0 != "\n" && $0 != "\t" }) {
                    result["payload"] = text
                } else {
                    result["payload_base64"] = Data(shown).base64EncodedString()
                }
                if payload.count > shown.count { result["payload_shown"] = "first \(shown.count) bytes" }
                return result
            case .failed(_, let message):
                throw AdminSocket.Refusal(message)
            default:
                throw AdminSocket.Refusal("unexpected answer reading \(id)/\(entry)")
            }
        default:
            throw AdminSocket.Refusal("ledger takes list, info LEDGER, or read-entry LEDGER ENTRY")
        }
    }

    static func describe(_ id: LedgerID, _ state: LedgerState) -> [String: Any] {
        ["ledger": id.description, "entries": state.lastEntry + 1, "last_entry": state.lastEntry, "lac": state.lac,
         "fenced": state.fenced]
    }

    static func ledgerID(_ text: String) throws -> LedgerID {
        let digits = text.hasPrefix("L") ? String(text.dropFirst()) : text
        guard let raw = UInt64(digits) else { throw AdminSocket.Refusal("'\(text)' is not a ledger id (e.g. L42 or 42)") }
        return LedgerID(raw)
    }

    /// Non-empty buckets as rows, so a table shows where the counts are.
    static func histogram(_ buckets: [UInt64], label: (Int) -> String) -> [[String: Any]] {
        buckets.enumerated().filter { $0.element > 0 }.map { ["bucket": label($0.offset), "count": $0.element] }
    }

    static func micros(_ value: Int) -> String {
        value >= 1_000_000 ? "\(value / 1_000_000) s" : value >= 1000 ? "\(value / 1000) ms" : "\(value) µs"
    }

    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var amount = Double(value), unit = 0
        while amount >= 1024 && unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", amount, units[unit])
    }
}
