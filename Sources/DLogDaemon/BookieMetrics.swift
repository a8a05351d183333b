import DLogBookie
import Foundation

/// The bookie's live counters and gauges in Prometheus text: requests, journal syncs, queue depth, the bookie's
/// state, healing and scrub. Built at each scrape; the distributions (service times, sync latency, batch sizes)
/// are recorded as they happen (`BookieMeters`, `JournalMeters`) and come from the role's `RoleRegistry`.
enum BookieMetrics {
    static func render(_ bookie: Bookie, recovery: RecoveryService? = nil, scrubber: Scrubber? = nil,
                       membership: BookieMembership? = nil, labels: [String: String] = [:]) -> String {
        var out = PrometheusText(labels: labels)
        if let membership {
            out.metric("dlog_bookie_gc_listings_total", "counter",
                       "full listings of every ledger's metadata by GC (between them it follows changes)",
                       [([:], Double(membership.listings.load(ordering: .relaxed)))])
            out.metric("dlog_bookie_gc_deleted_ledgers_total", "counter",
                       "ledgers GC deleted here: deleted from metadata, or copies healing left behind",
                       [([:], Double(membership.collected.load(ordering: .relaxed)))])
        }
        if let worker = recovery?.worker {
            let totals = worker.totals
            out.metric("dlog_recovery_bytes_copied_total", "counter", "bytes this bookie's replication worker copied",
                       [([:], Double(totals.bytesCopied))])
            out.metric("dlog_recovery_entries_copied_total", "counter", "entries this bookie's replication worker copied",
                       [([:], Double(totals.entriesCopied))])
            out.metric("dlog_recovery_copy_errors_total", "counter", "entries no healthy replica could be copied from",
                       [([:], Double(totals.copyErrors))])
            out.metric("dlog_recovery_ledgers_repaired_total", "counter", "ledgers whose marks this worker cleared",
                       [([:], Double(totals.ledgersRepaired))])
        }
        if let auditor = recovery?.auditor {
            let status = auditor.status
            out.metric("dlog_recovery_auditor", "gauge", "1 while this bookie is the cluster's auditor",
                       [([:], status.isAuditor ? 1 : 0)])
            if let count = status.underReplicated {
                out.metric("dlog_recovery_under_replicated_ledgers", "gauge", "ledgers with under-replication marks (from the auditor)",
                           [([:], Double(count))])
            }
            out.metric("dlog_recovery_bookies_declared_lost_total", "counter", "bookies this auditor declared lost",
                       [([:], Double(status.declaredLost))])
        }
        if let scrubber {
            let status = scrubber.status
            out.metric("dlog_scrub_bytes_total", "counter", "bytes re-read by scrub (finished passes)",
                       [([:], Double(status.bytesScrubbed))])
            out.metric("dlog_scrub_damaged_entries_total", "counter", "damaged entries scrub found",
                       [([:], Double(status.damagedFound))])
            out.metric("dlog_scrub_running", "gauge", "1 while a scrub pass runs", [([:], status.running ? 1 : 0)])
        }
        out.metric("dlog_bookie_adds_total", "counter", "ADD requests received",
                   [([:], Double(bookie.addsReceived.load(ordering: .relaxed)))])
        out.metric("dlog_bookie_reads_total", "counter", "READ requests received (fence reads included)",
                   [([:], Double(bookie.readsReceived.load(ordering: .relaxed)))])
        out.metric("dlog_bookie_long_polls_total", "counter", "READ_LAC long polls received (tailing readers waiting for entries)",
                   [([:], Double(bookie.longPollsReceived.load(ordering: .relaxed)))])
        out.metric("dlog_bookie_lac_writes_total", "counter", "WRITE_LAC requests received (writers telling a new LAC)",
                   [([:], Double(bookie.lacWritesReceived.load(ordering: .relaxed)))])
        out.metric("dlog_bookie_malformed_requests_total", "counter", "connections closed on a malformed frame",
                   [([:], Double(bookie.malformedRequests.load(ordering: .relaxed)))])
        out.metric("dlog_bookie_permission_denied_total", "counter", "requests refused as PERMISSION_DENIED",
                   [([:], Double(bookie.permissionDenied.load(ordering: .relaxed)))])
        out.metric("dlog_bookie_read_only", "gauge", "1 while the bookie takes no adds",
                   [([:], bookie.isReadOnly ? 1 : 0)])
        out.metric("dlog_bookie_disk_used_ratio", "gauge", "used fraction of each journal and ledger directory's file system",
                   bookie.diskUsage().map { (["kind": $0.kind, "dir": "\($0.index)"], $0.usedFraction) })
        let stats = bookie.journals.map(\.stats)
        func perJournal(_ value: (JournalStats) -> Double) -> [(labels: [String: String], value: Double)] {
            stats.enumerated().map { (["journal": "\($0.offset)"], value($0.element)) }
        }
        out.metric("dlog_journal_syncs_total", "counter", "journal write+sync batches", perJournal { Double($0.syncs) })
        out.metric("dlog_journal_records_synced_total", "counter", "records made durable", perJournal { Double($0.recordsSynced) })
        out.metric("dlog_journal_bytes_synced_total", "counter", "bytes made durable", perJournal { Double($0.bytesSynced) })
        out.metric("dlog_journal_queue_depth", "gauge", "records waiting for the journal", perJournal { Double($0.queueDepth) })
        out.metric("dlog_journal_rejected_queue_full_total", "counter", "adds refused because the journal queue was full",
                   perJournal { Double($0.rejectedQueueFull) })
        out.metric("dlog_journal_free_file_waits_total", "counter",
                   "waits of up to 100 ms by the journal writer, with every add held, for a checkpoint to free a file",
                   perJournal { Double($0.waitsForFreeFile) })
        out.metric("dlog_journal_spins_total", "counter",
                   "polls of the queue by the journal writer after a completion, instead of a sleep (journal_spin_us)",
                   perJournal { Double($0.spins) })
        out.metric("dlog_journal_spin_hits_total", "counter", "polls after a completion that found an add",
                   perJournal { Double($0.spinsThatFoundWork) })
        out.metric("dlog_journal_failed", "gauge", "1 once the journal failed (the bookie takes no more adds)",
                   perJournal { $0.failed == nil ? 0 : 1 })
        return out.text
    }
}
