import ArgumentParser
import DLogMetadata
import DLogWire
import Foundation

/// `bookie decommission` and `bookie drain`: start the retirement, then follow it to the end with a live
/// progress line (rewritten in place on a terminal, a line every 5 s otherwise), and finish it.
struct Retirement {
    let options: MetadataOption
    let id: String
    let drain: Bool
    let noWait: Bool
    let json: Bool

    func run() async throws {
        let bookie = BookieID(id)
        if let problem = bookie.problem { throw ValidationError(problem) }
        let cluster = try options.cluster()
        try await reportingErrors {
            let started = ContinuousClock.now
            let marked = try await cluster.startRetirement(bookie, drain: drain)
            let what = drain ? "drain" : "decommission"
            if noWait {
                if json {
                    print(#"{"bookie":"\#(bookie)","ledgers_marked":\#(marked),"waiting":false}"#)
                } else {
                    print("\(what) of \(bookie) started: \(marked) ledger(s) marked for re-replication; follow it with "
                          + "`dlogctl recovery status` or `dlogctl bookie \(what) \(bookie)`")
                }
                return
            }
            let copied = try await follow(bookie, cluster: cluster, marked: marked)
            try await cluster.finishRetirement(bookie)
            let seconds = (ContinuousClock.now - started).components.seconds
            if drain { try await waitUntilDeregistered(bookie, cluster: cluster) }
            if json {
                print(#"{"bookie":"\#(bookie)","ledgers_marked":\#(marked),"bytes_copied":\#(copied),"seconds":\#(seconds),"done":true}"#)
            } else {
                print("\(drain ? "drained and " : "")decommissioned bookie \(bookie) in \(seconds) s: no ledger names it, "
                      + "its cookie is removed\(drain ? " and it left the registry; stop it" : ""); its disks may be reused afresh")
            }
        }
        await cluster.store.shutdown()
    }

    /// Waits until no ledger names `bookie`, printing progress. Returns the bytes the workers copied meanwhile.
    private func follow(_ bookie: BookieID, cluster: Cluster, marked: Int) async throws -> Int64 {
        let terminal = isatty(STDERR_FILENO) == 1
        let start = ContinuousClock.now
        let copiedAtStart = try await copiedSoFar(cluster)
        var lastLine = ContinuousClock.now - .seconds(10)
        var lastMarking = ContinuousClock.now
        while true {
            // Ledgers that came to name the bookie after the first marking (created while it still looked
            // writable) are marked too; every 10 s, as the auditor does, since each marking reads every ledger.
            if ContinuousClock.now - lastMarking >= .seconds(10) {
                lastMarking = .now
                try await cluster.markLedgers(naming: bookie, reason: .retiring)
            }
            let left = try await cluster.ledgersNaming(bookie)
            let copied = try await copiedSoFar(cluster) - copiedAtStart
            // A drained bookie must be seen read-only by placement first: until then a new ledger may still be
            // placed on it.
            let writable = try await cluster.bookies().contains { $0.id == bookie && !$0.readOnly }
            let settled = !drain || !writable
            if left.count == 0 && settled {
                if terminal && !json { FileHandle.standardError.write(Data("\n".utf8)) }
                return max(0, copied)
            }
            let elapsed = max(0.001, Double((ContinuousClock.now - start).components.seconds)
                + Double((ContinuousClock.now - start).components.attoseconds) / 1e18)
            let rate = Double(max(0, copied)) / elapsed
            let eta = rate > 0 ? "\(Int(Double(left.bytes) / rate)) s" : "-"
            var line = "waiting for \(left.count) ledger(s) naming \(bookie) to move: \(ByteCount(max(0, copied))) copied, "
                + "\(ByteCount(Int64(rate)))/s, ETA \(eta)"
            if let why = try await cluster.workerProgress().compactMap(\.waiting).first {
                line += "; waiting: " + why.split(separator: "\n").joined(separator: "; ")
            }
            if !json {
                if terminal {
                    FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
                } else if ContinuousClock.now - lastLine >= .seconds(5) {
                    lastLine = .now
                    FileHandle.standardError.write(Data("\(line)\n".utf8))
                }
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    private func copiedSoFar(_ cluster: Cluster) async throws -> Int64 {
        try await cluster.workerProgress().reduce(0) { $0 + $1.bytesCopied }
    }

    /// A drained bookie deregisters once its cookie is gone; waits for it (up to 15 s) and says so if not.
    private func waitUntilDeregistered(_ bookie: BookieID, cluster: Cluster) async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if try await !cluster.bookies().contains(where: { $0.id == bookie }) { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        FileHandle.standardError.write(Data("dlogctl: \(bookie) is still registered; it leaves when it next checks its cookie, or when stopped\n".utf8))
    }
}

/// Bytes for people: 1.5 GiB, 320 MiB, 12 KiB, 800 B.
struct ByteCount: CustomStringConvertible {
    let bytes: Int64
    init(_ bytes: Int64) { self.bytes = bytes }
    var description: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes), unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
