import DLogBookie
import DLogIO
import DLogWire
import Foundation
import Logging
import Synchronization

/// Runs scrub passes over the bookie's entry logs on a thread of its own (docs/recovery.md): one every
/// `scrub_interval_s` (the time of the last finished pass is kept in `scrub.last` in the first ledger
/// directory, so restarts do not postpone it for ever), and one at once on `dlogctl admin scrub`. Each damaged
/// entry is logged with ledger, entry, file and offset, and handed to `onDamage`, which marks it for repair.
final class Scrubber: Sendable {
    struct Status: Sendable {
        var running = false
        var passes = 0
        var lastFinished: Date?
        var current = LedgerStorage.ScrubProgress()
        /// Over the life of the process.
        var bytesScrubbed: Int64 = 0
        var damagedFound = 0
        var lastError: String?
    }

    let bookie: Bookie
    let bytesPerSecond: Int
    let interval: Duration
    let logger: Logger
    let onDamage: @Sendable ([LedgerStorage.DamagedEntry]) -> Void
    private let stampPath: String
    private let state = Mutex(Status())
    private let requested = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// What the thread sleeps on until the next pass is due, a request or a stop.
    private let wakeup = Wakeup()

    init(bookie: Bookie, settings: BookieSettings, logger: Logger,
         onDamage: @escaping @Sendable ([LedgerStorage.DamagedEntry]) -> Void) {
        self.bookie = bookie
        bytesPerSecond = settings.scrubRateBytes
        interval = .seconds(settings.scrubIntervalSeconds)
        self.logger = logger
        self.onDamage = onDamage
        stampPath = settings.ledgerDirectories[0] + "/scrub.last"
    }

    var status: Status { state.withLock { $0 } }

    func start() {
        let lastFinished = (try? String(contentsOfFile: stampPath, encoding: .utf8))
            .flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }.map { Date(timeIntervalSince1970: $0) }
        if lastFinished == nil { stamp(Date()) }  // a new bookie: its first pass is one interval away
        state.withLock { $0.lastFinished = lastFinished ?? Date() }
        let thread = Thread { [self] in
            loop()
            finished.signal()
        }
        thread.name = "dlog-scrub"
        thread.start()
    }

    /// Starts a pass now; false when one is running already.
    func requestNow() -> Bool {
        guard !state.withLock({ $0.running }) else { return false }
        requested.store(true, ordering: .relaxed)
        wakeup.signal()
        return true
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        wakeup.signal()
        finished.wait()
    }

    private func loop() {
        while !stopping.load(ordering: .relaxed) {
            let left = dueIn()
            if requested.exchange(false, ordering: .relaxed) || left == .zero {
                pass()
            } else {
                // At most a minute at a time: the interval counts in wall-clock time, which can be set.
                wakeup.wait(until: left.map { .now + min($0, .seconds(60)) })
            }
        }
    }

    /// How long until a pass is due on the interval: zero when due, nil when passes come only on request.
    private func dueIn() -> Duration? {
        guard interval > .zero else { return nil }
        guard let last = state.withLock({ $0.lastFinished }) else { return .zero }
        let left = Double(interval.components.seconds) - Date().timeIntervalSince(last)
        return left <= 0 ? .zero : .milliseconds(Int64(left * 1000))
    }

    private func pass() {
        state.withLock { s in
            s.running = true
            s.current = LedgerStorage.ScrubProgress()
        }
        logger.info("scrub started: re-reading every stored entry", metadata: ["rate_bytes": "\(bytesPerSecond)"])
        do {
            let result = try bookie.storage.scrub(bytesPerSecond: bytesPerSecond,
                                                  shouldStop: { stopping.load(ordering: .relaxed) },
                                                  report: { progress in state.withLock { $0.current = progress } })
            for damage in result.damaged {
                logger.error("scrub found a damaged entry; it is marked for repair from another replica", metadata: [
                    "ledger_id": "\(damage.ledger.rawValue)", "entry": "\(damage.entry.rawValue)", "file": "\(damage.path)",
                    "offset": "\(damage.offset)"])
            }
            if !result.damaged.isEmpty { onDamage(result.damaged) }
            let now = Date()
            if !stopping.load(ordering: .relaxed) { stamp(now) }
            state.withLock { s in
                s.running = false
                s.passes += 1
                s.lastFinished = now
                s.current = result
                s.bytesScrubbed += result.bytesDone
                s.damagedFound += result.damaged.count
                s.lastError = nil
            }
            logger.info("scrub finished", metadata: ["entries": "\(result.entriesChecked)", "bytes": "\(result.bytesDone)",
                                                     "damaged": "\(result.damaged.count)"])
        } catch {
            logger.error("scrub failed; the next pass is due after scrub_interval_s", metadata: ["error": "\(error)"])
            state.withLock { s in
                s.running = false
                s.lastFinished = Date()
                s.lastError = "\(error)"
            }
        }
    }

    private func stamp(_ date: Date) {
        try? String(Int(date.timeIntervalSince1970)).write(toFile: stampPath, atomically: true, encoding: .utf8)
    }

    /// The admin command's answer.
    func describe() -> [String: Any] {
        let s = status
        var out: [String: Any] = ["running": s.running, "passes": s.passes, "files_done": s.current.filesDone,
                                  "files_total": s.current.filesTotal, "bytes_done": s.current.bytesDone,
                                  "bytes_total": s.current.bytesTotal, "entries_checked": s.current.entriesChecked,
                                  "damaged": s.current.damaged.map { ["ledger": $0.ledger.description, "entry": $0.entry.rawValue,
                                                                      "file": $0.path, "offset": $0.offset] as [String: Any] },
                                  "rate_bytes": bytesPerSecond]
        if let last = s.lastFinished { out["last_finished"] = ISO8601DateFormatter().string(from: last) }
        if let error = s.lastError { out["last_error"] = error }
        return out
    }
}
