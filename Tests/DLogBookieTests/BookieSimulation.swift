#if canImport(Glibc)
import Glibc
#endif
@testable import DLogBookie
import DLogIO
import DLogTestSupport
import DLogWire
import Logging
import Foundation
import Synchronization

/// A seeded random workload against a bookie whose journal and ledger storage live on a `SimulatedDisk`:
/// adds over many ledgers, fences, reads, deletes, checkpoints, compaction, clean restarts, power cuts that drop
/// or tear what was not synced, a full disk, and a journal sync that fails. After every step it checks what the
/// bookie promised:
/// - every acknowledged entry reads back byte-exact (until its ledger is deleted);
/// - nothing is acknowledged on a fenced ledger, and a fenced ledger stays fenced across restarts and cuts;
/// - a read never returns bytes other than those written for that entry (damaged data is never good);
/// - a restart never refuses what the bookie wrote itself; after an injected EIO it may, naming file and offset;
/// - deleting ledgers frees their space once checkpoints and compaction ran.
///
/// The seed decides the run: the bookie runs on the simulation's thread alone. Its journal has no writer thread
/// (`Journal.Configuration.writerThread` off): the simulation steps it, in simulated time, once a step's
/// requests are all queued. It has no background threads either: the simulation takes its background turns
/// after every step and runs the checkpoint a journal short of files asks for. A failure message starts with
/// the seed.
final class BookieSimulation {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What the bookie acknowledged, as the simulation knows it.
    struct Model {
        /// Acknowledged entries and their payload sizes (the bytes follow from ledger, entry and size).
        var entries: [UInt64: [Int64: Int]] = [:]
        /// Adds whose outcome is unknown (in flight at a cut, or failed by an injected error): they may be
        /// stored or not, but if read they must read back right.
        var maybe: [UInt64: [Int64: Int]] = [:]
        var fenced: Set<UInt64> = []
        var nextEntry: [UInt64: Int64] = [:]
        /// Entries of deleted ledgers: never to be read again, even after a power cut (a later add makes the
        /// ledger anew, with higher entry ids).
        var gone: [UInt64: Set<Int64>] = [:]
    }

    let seed: UInt64
    let disk = SimulatedDisk()
    private var random: SeededGenerator
    private var bookie: Bookie
    private var model = Model()
    /// Set once bit rot damaged an entry log: from then on an acknowledged entry may fail to read (CORRUPT_ENTRY,
    /// an I/O error, or gone with a record the index rebuild had to drop), but never read back wrong.
    private var rotten = false
    /// Set once an injected EIO made a sync lie: from then on a restart may refuse the journal, naming the file
    /// and offset (the run then ends there).
    private var diskLied = false
    private(set) var steps: [String] = []
    /// Every answer the bookie gave, in order: with `steps` and the disk's bytes, what a second run of the seed
    /// must repeat exactly.
    private(set) var trace: [String] = []
    private let logger: Logger
    static let ledgers = UInt64(1)...UInt64(12)

    init(seed: UInt64) throws {
        self.seed = seed
        random = SeededGenerator(seed: seed)
        var quiet = Logger(label: "simulation")
        quiet.logLevel = .critical
        logger = quiet
        bookie = try Self.startBookie(on: disk, shards: 1 << Int(seed % 3), logger: quiet)
    }

    /// The ledger state's shards: 1, 2 or 4 by seed, so the simulator runs the sharded driver too (a bookie on
    /// a machine of this size has one).
    var shards: Int { 1 << Int(seed % 3) }

    static func configuration(_ disk: SimulatedDisk, shards: Int = 1) -> Bookie.Configuration {
        var c = Bookie.Configuration(
            journal: .init(directory: "/bookie/journal", fileBytes: 256 << 10, filesMax: 4, engine: .blocking),
            journalDirectories: ["/bookie/journal"],
            storage: .init(ledgerDirectories: ["/bookie/ledgers-0", "/bookie/ledgers-1", "/bookie/ledgers-2"],
                           writeCacheBytes: 512 << 10, shards: shards))
        c.place(on: disk, clock: disk.clock)
        // Background work runs when the simulation says: its turns after each step (a simulated second each),
        // checkpoints and compaction of its own steps, and the checkpoint a journal short of files asks for.
        c.backgroundThreads = false
        c.journal.writerThread = false
        c.checkpointInterval = .seconds(20)
        c.diskCheckInterval = .seconds(5)
        return c
    }

    private static func startBookie(on disk: SimulatedDisk, shards: Int, logger: Logger) throws -> Bookie {
        let b = try Bookie(configuration: configuration(disk, shards: shards), logger: logger)
        try b.start { _ in }
        return b
    }

    func finish() { bookie.stop() }

    /// Every file under /bookie with an FNV-1a digest of its bytes: two runs of a seed must agree.
    func diskDigest() throws -> [String: UInt64] {
        var files: [String: UInt64] = [:]
        func walk(_ path: String) throws {
            guard let names = try? disk.list(path) else {
                var hash: UInt64 = 0xcbf2_9ce4_8422_2325
                for b in try disk.readAll(path) { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
                files[path] = hash
                return
            }
            for name in names { try walk(path + "/" + name) }
        }
        try walk("/bookie")
        return files
    }

    private func fail(_ what: String) -> Failure {
        Failure(description: "seed \(seed), step \(steps.count) (\(steps.last ?? "start")): \(what); steps: "
                + steps.suffix(12).joined(separator: ", "))
    }

    // MARK: The run

    /// Runs `count` seeded steps, checking the invariants after each. Returns early (without failing) only when
    /// a restart after an injected EIO refused the journal as it should: naming the file and offset.
    func run(steps count: Int) throws {
        do {
            try runSteps(count)
        } catch is RefusedAfterALie {
            return
        }
    }

    private struct RefusedAfterALie: Error {}

    private func runSteps(_ count: Int) throws {
        for _ in 0 ..< count {
            let roll = Int.random(in: 0 ..< 100, using: &random)
            switch roll {
            case 0 ..< 36: try adds()
            case 36 ..< 40: try longPoll()
            case 40 ..< 48: try fence()
            case 48 ..< 54: try delete()
            case 54 ..< 62: try checkpoint()
            case 62 ..< 67: try reclaim()
            case 67 ..< 73: try restart()
            case 73 ..< 83: try powerCut()
            case 83 ..< 88: try backgroundCut()
            case 88 ..< 91: try fullDisk()
            case 91 ..< 93: try bitRot()
            default: try failedSync()
            }
            try backgroundTurn()
            if ProcessInfo.processInfo.environment["DLOG_SIM_DEBUG"] != nil { trace.append("disk after \(steps.last ?? ""): \(try diskDigest().sorted { $0.key < $1.key })") }
            try checkReads()
        }
    }

    // MARK: Steps

    private static func entryBytes(_ ledger: UInt64, _ e: Int64, _ size: Int) -> [UInt8] { entry(ledger, e, size: size) }

    /// A simulated second passes and the bookie takes a background turn, as its thread would: a checkpoint on
    /// the interval or when asked, a disk check. Whether one is asked is set from the state alone (the cache
    /// full): a journal that waited for a file may ask again after its checkpoint, by thread timing.
    private func backgroundTurn() throws {
        disk.clock.advance(by: .seconds(1))
        bookie.checkpointRequested.store(bookie.storage.cacheFull, ordering: .relaxed)
        bookie.backgroundTurn(clock: disk.clock)
    }

    /// Sends requests in order, then steps the journals until every answer is in (see `settle`). `send` gets a
    /// reply to pass to its request.
    private func requests(_ count: Int, _ send: (Int, @escaping @Sendable (BookieResponse) -> Void) -> Void) throws -> [BookieResponse] {
        let answers = Slots(count)
        for i in 0 ..< count { send(i) { answers.set(i, $0) } }
        return try settle(answers)
    }

    /// Steps every journal until it is idle, and again until every answer is in. A journal that has no free
    /// file waits for a checkpoint, which the bookie's background thread would run: the simulation runs it.
    private func settle(_ answers: Slots) throws -> [BookieResponse] {
        for _ in 0 ..< 1_000 {
            var waiting = false
            for journal in bookie.journals {
                stepping: while true {
                    switch journal.step(now: disk.clock.now) {
                    case .busy: continue
                    case .waitingForFile: waiting = true
                    case .idle, .ended: break
                    }
                    break stepping
                }
            }
            if let all = answers.all { return all }
            guard waiting else { break }
            _ = bookie.runCheckpoint()
        }
        throw fail("answers missing with every journal idle or short of files: \(answers.description)")
    }

    /// Answers by request, filled from callbacks.
    private final class Slots: Sendable, CustomStringConvertible {
        private let slots: Mutex<[BookieResponse?]>
        init(_ count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }
        func set(_ i: Int, _ answer: BookieResponse) { slots.withLock { $0[i] = answer } }
        var all: [BookieResponse]? { slots.withLock { $0.contains { $0 == nil } ? nil : $0.map { $0! } } }
        var description: String { slots.withLock { "\($0)" } }
    }

    private func add(_ ledger: UInt64, _ e: Int64, _ size: Int) throws -> BookieResponse {
        try send([(ledger, e, size)])[0]
    }

    /// Picks adds for a step: ledgers from the pool, next entry ids, sizes up to 3 KB.
    private func plannedAdds(_ count: Int) -> [(UInt64, Int64, Int)] {
        (0 ..< count).map { _ in
            let ledger = UInt64.random(in: Self.ledgers, using: &random)
            let e = model.nextEntry[ledger, default: 0]
            model.nextEntry[ledger] = e + 1
            return (ledger, e, Int.random(in: 1...3000, using: &random))
        }
    }

    /// Sends adds together (so the journal groups them) and returns each answer: one by one, or as one run (as
    /// the server takes the adds of one read of a connection).
    private func send(_ adds: [(UInt64, Int64, Int)]) throws -> [BookieResponse] {
        let b = bookie
        let answers: [BookieResponse]
        if Bool.random(using: &random) {
            answers = try requests(adds.count) { i, reply in
                let (ledger, e, size) = adds[i]
                b.add(masterKey: testKey, entry: Self.entryBytes(ledger, e, size), recovery: false, reply: reply)
            }
        } else {
            let slots = Slots(adds.count)
            b.add(run: adds.enumerated().map { i, add in
                Bookie.RunAdd(key: testKey, entry: Self.entryBytes(add.0, add.1, add.2), recovery: false,
                              answer: .reply { slots.set(i, $0) })
            })
            answers = try settle(slots)
        }
        trace += answers.map { "\($0)" }
        return answers
    }

    private func adds() throws {
        let planned = plannedAdds(Int.random(in: 1...30, using: &random))
        steps.append("adds(\(planned.count))")
        for (add, answer) in zip(planned, try send(planned)) {
            let (ledger, e, size) = add
            switch answer {
            case .added:
                guard !model.fenced.contains(ledger) else { throw fail("add \(ledger)/\(e) acknowledged on a fenced ledger") }
                model.entries[ledger, default: [:]][e] = size
            case .failed(.fenced, _) where model.fenced.contains(ledger):
                break
            default:
                throw fail("add \(ledger)/\(e) answered \(answer)")
            }
        }
    }

    /// A long poll at the current LAC is answered by the next add (its LAC counts once the bookie takes it), with
    /// the LAC it carries, and the entry after `previous` only as written; a poll far ahead waits, and its timeout
    /// answers it once with the current LAC.
    private func longPoll() throws {
        let open = model.entries.keys.filter { !model.fenced.contains($0) }.sorted()
        guard let ledger = open.randomElement(using: &random) else { return }
        let withEntry = Bool.random(using: &random)
        steps.append("longPoll(\(ledger), withEntry: \(withEntry))")
        let id = LedgerID(ledger)
        let answers = Answers()
        _ = bookie.readLAC(ledger: id, longPollPrevious: nil) { answers.append($0) }
        guard case .lac(let current, _) = answers.take().first else { throw fail("READ_LAC of \(ledger) did not answer") }
        _ = bookie.readLAC(ledger: id, longPollPrevious: current, withEntry: withEntry) { answers.append($0) }
        let (e, size) = (model.nextEntry[ledger, default: 0], Int.random(in: 1...3000, using: &random))
        model.nextEntry[ledger] = e + 1
        guard case .added = try add(ledger, e, size) else { throw fail("add \(ledger)/\(e) refused") }
        model.entries[ledger, default: [:]][e] = size
        let woken = answers.take()
        switch woken.first {
        case .lac(let lac, _) where woken.count == 1 && lac.rawValue >= e - 1:
            break
        case .lacAndEntry(let lac, _, let bytes) where woken.count == 1 && lac.rawValue >= e - 1:
            let next = current.rawValue + 1
            guard let written = model.entries[ledger]?[next] ?? model.maybe[ledger]?[next],
                  bytes == Self.entryBytes(ledger, next, written) else {
                throw fail("a long poll of \(ledger) brought entry \(next) with other bytes")
            }
        default:
            throw fail("a long poll of \(ledger) after LAC \(current) answered \(woken) to an add carrying LAC \(e - 1)")
        }
        let far = EntryID(e + 100)
        guard let token = bookie.readLAC(ledger: id, longPollPrevious: far, reply: { answers.append($0) }) else {
            throw fail("a long poll of \(ledger) after LAC \(far) answered at once: \(answers.take())")
        }
        bookie.expireLongPoll(ledger: id, token: token) { answers.append($0) }
        bookie.expireLongPoll(ledger: id, token: token) { answers.append($0) }
        let expired = answers.take()
        guard expired.count == 1, case .lac(let lac, _) = expired[0], lac < far else {
            throw fail("the timeout of a long poll of \(ledger) answered \(expired)")
        }
    }

    /// Answers collected from callbacks.
    private final class Answers: Sendable {
        private let list = Mutex<[BookieResponse]>([])
        func append(_ answer: BookieResponse) { list.withLock { $0.append(answer) } }
        func take() -> [BookieResponse] { list.withLock { l in defer { l = [] }; return l } }
    }

    private func fence() throws {
        let ledger = UInt64.random(in: Self.ledgers, using: &random)
        steps.append("fence(\(ledger))")
        let b = bookie
        let answer = try requests(1) { _, reply in
            b.fenceAndRead(ledger: LedgerID(ledger), entry: EntryID(0), masterKey: testKey, reply: reply,
                           read: { reply(b.readEntryBlocking(ledger: LedgerID(ledger), entry: EntryID(0))) })
        }[0]
        trace.append("\(answer)")
        switch answer {
        case .entry, .failed(.noEntry, _), .failed(.noLedger, _): model.fenced.insert(ledger)
        // The fence is durable before the read; it is the read that met the rot.
        case .failed(.corruptEntry, _) where rotten, .failed(.ioError, _) where rotten: model.fenced.insert(ledger)
        default: throw fail("fence of \(ledger) answered \(answer)")
        }
    }

    private func delete() throws {
        let ledger = UInt64.random(in: Self.ledgers, using: &random)
        steps.append("delete(\(ledger))")
        let b = bookie
        let answer = try requests(1) { _, reply in b.deleteLedger(LedgerID(ledger), reply: reply) }[0]
        trace.append("\(answer)")
        switch answer {
        case .done, .failed(.noLedger, _):
            // Gone, fencing included: a later add creates the ledger anew.
            model.gone[ledger, default: []].formUnion((model.entries[ledger] ?? [:]).keys)
            model.gone[ledger, default: []].formUnion((model.maybe[ledger] ?? [:]).keys)
            model.entries[ledger] = nil
            model.maybe[ledger] = nil
            model.fenced.remove(ledger)
        default:
            throw fail("delete of \(ledger) answered \(answer)")
        }
    }

    private func checkpoint() throws {
        steps.append("checkpoint")
        if let error = bookie.runCheckpoint() { throw fail("checkpoint failed: \(error)") }
    }

    /// Checkpoints and compacts until nothing is left to compact; then the entry logs may hold at most about
    /// twice the live bytes (compaction leaves files that are at least half live).
    private func reclaim() throws {
        steps.append("reclaim")
        try checkpoint()
        for _ in 0 ..< 50 where bookie.storage.compactionCandidate(threshold: bookie.configuration.compactionThreshold) != nil {
            bookie.runCompaction()
            try checkpoint()
        }
        let live = model.entries.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1 + 64 } }
            + model.maybe.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1 + 64 } }
        var stored = 0
        var files = 0
        for dir in bookie.configuration.storage.ledgerDirectories {
            for name in try disk.list(dir) where name.hasPrefix("entrylog-") {
                let f = try disk.open(dir + "/" + name, [.readOnly])
                stored += Int(try f.size())
                f.close()
                files += 1
            }
        }
        // A rotten file may not be compactable: its bytes stay.
        guard rotten || stored <= 2 * live + files * 64 << 10 else {
            throw fail("entry logs hold \(stored) bytes in \(files) files for \(live) live bytes")
        }
    }

    private func restart() throws {
        steps.append("restart")
        bookie.stop()
        try reopen()
    }

    /// Starts a new bookie on the disk; the acknowledged state must all be there. Once a sync lied, a refusal
    /// naming the journal file and offset ends the run (`RefusedAfterALie`); any other refusal is a failure.
    private func reopen() throws {
        do {
            bookie = try Self.startBookie(on: disk, shards: shards, logger: logger)
        } catch {
            let text = "\(error)"
            if diskLied, text.contains("/bookie/journal/journal-"), text.contains("offset") { throw RefusedAfterALie() }
            throw fail("restart refused\(diskLied ? " without naming the journal file and offset" : ""): \(text)")
        }
        try checkAll()
    }

    /// Sends adds while the disk fails: an acknowledged one joins the model (not on a fenced ledger); any other
    /// answer leaves its outcome unknown.
    private func sendWhileFailing(_ planned: [(UInt64, Int64, Int)]) throws {
        for (add, answer) in zip(planned, try send(planned)) {
            let (ledger, e, size) = add
            if case .added = answer {
                guard !model.fenced.contains(ledger) else { throw fail("add \(ledger)/\(e) acknowledged on a fenced ledger") }
                model.entries[ledger, default: [:]][e] = size
            } else if !model.fenced.contains(ledger) {
                model.maybe[ledger, default: [:]][e] = size
            }
        }
    }

    /// Adds in flight when the power goes, a few more disk changes getting through first; then a crash that
    /// drops or tears whatever was not synced, and a restart.
    private func powerCut() throws {
        let planned = plannedAdds(Int.random(in: 1...20, using: &random))
        let changes = Int.random(in: 0...12, using: &random)
        let keep: SimulatedDisk.Keep = Bool.random(using: &random) ? .nothing : .randomSectors
        steps.append("powerCut(adds: \(planned.count), after: \(changes), \(keep))")
        disk.haltAfter(changes: changes)
        try sendWhileFailing(planned)
        bookie.stop()
        disk.crash(seed: random.next(), keep: keep)
        try reopen()
    }

    /// The power goes in the middle of a checkpoint, or of a compaction after deletes, a seeded number of disk
    /// changes in; then a restart.
    private func backgroundCut() throws {
        let changes = Int.random(in: 0...40, using: &random)
        let compacting = Bool.random(using: &random)
        let keep: SimulatedDisk.Keep = Bool.random(using: &random) ? .nothing : .randomSectors
        steps.append("backgroundCut(\(compacting ? "compaction" : "checkpoint"), after: \(changes), \(keep))")
        disk.haltAfter(changes: changes)
        _ = bookie.runCheckpoint()
        if compacting { bookie.runCompaction() }
        bookie.stop()
        disk.crash(seed: random.next(), keep: keep)
        try reopen()
    }

    /// A bit flips in an entry log, anywhere: header, records, index, summary or footer.
    private func bitRot() throws {
        var files: [String] = []
        for dir in bookie.configuration.storage.ledgerDirectories {
            files += try disk.list(dir).filter { $0.hasPrefix("entrylog-") && $0.hasSuffix(".log") }.map { dir + "/" + $0 }
        }
        guard let path = files.randomElement(using: &random) else { return }
        let f = try disk.open(path, [.readOnly])
        let size = try f.size()
        f.close()
        guard size > 0 else { return }
        let offset = Int64.random(in: 0 ..< size, using: &random)
        let mask = UInt8(1) << UInt8.random(in: 0...7, using: &random)
        steps.append("bitRot(\(path), at: \(offset))")
        try disk.damage(path, at: offset, xor: mask)
        rotten = true
    }

    /// The ledger disk fills: a checkpoint fails with ENOSPC and the bookie turns read-only; adds are refused
    /// as read-only (none acknowledged); with space again, a checkpoint succeeds and adds are taken again.
    private func fullDisk() throws {
        steps.append("fullDisk")
        let capacity = disk.capacityBytes
        let used = try disk.usage(of: "/bookie")
        disk.capacityBytes = Int64(used.totalBytes - used.freeBytes) + 4096
        let planned = plannedAdds(Int.random(in: 1...10, using: &random))
        let answers = try send(planned)
        _ = bookie.runCheckpoint()
        for (add, answer) in zip(planned, answers) {
            let (ledger, e, size) = add
            switch answer {
            case .added: model.entries[ledger, default: [:]][e] = size
            case .failed(.fenced, _) where model.fenced.contains(ledger): break
            case .failed(.readOnly, _), .failed(.ioError, _), .failed(.tooManyRequests, _):
                model.maybe[ledger, default: [:]][e] = size
            default: throw fail("add \(ledger)/\(e) on a full disk answered \(answer)")
            }
        }
        disk.capacityBytes = capacity
        try checkpoint()
        // The usage check the background thread runs each `diskCheckInterval` (it may have seen the full disk).
        bookie.checkDisks()
        guard !bookie.isReadOnly else { throw fail("still read-only once space was freed: \(bookie.readOnlyReason)") }
    }

    /// A journal sync fails (EIO): its adds fail and the journal stops taking writes, as the daemon then
    /// exits. After a restart (and maybe a power cut) the acknowledged state is all there; a restart may
    /// refuse only by naming the journal file and offset the disk lied about.
    private func failedSync() throws {
        let cut = Bool.random(using: &random)
        steps.append("failedSync(cut: \(cut))")
        diskLied = true
        disk.inject(.init(.dataSync, pathContains: "/journal/", errno: EIO, count: 1))
        let planned = plannedAdds(Int.random(in: 1...10, using: &random))
        try sendWhileFailing(planned)
        bookie.stop()
        // Adds that never reached the journal (a fenced ledger's) leave the fault unmet: it must not hit the
        // next bookie.
        disk.clearFaults()
        if cut { disk.crash(seed: random.next(), keep: .randomSectors) }
        try reopen()
    }

    // MARK: Invariants

    /// Every acknowledged entry, and fencing, as the model says.
    private func checkAll() throws {
        for (ledger, entries) in model.entries {
            for (e, size) in entries { try checkRead(ledger, e, size, mustExist: true) }
        }
        for (ledger, entries) in model.maybe {
            for (e, size) in entries { try checkRead(ledger, e, size, mustExist: false) }
        }
        for ledger in model.fenced.sorted() {
            guard bookie.storage.ledgerState(LedgerID(ledger))?.fenced == true else {
                throw fail("ledger \(ledger) was fenced and is not any more")
            }
        }
        for (ledger, entries) in model.gone {
            for e in entries.sorted() {
                if case .entry = bookie.readEntryBlocking(ledger: LedgerID(ledger), entry: EntryID(e)) {
                    throw fail("\(ledger)/\(e) of a deleted ledger is back")
                }
            }
        }
    }

    /// A sample of acknowledged entries, and one entry never written.
    private func checkReads() throws {
        for (ledger, entries) in model.entries.sorted(by: { $0.key < $1.key }) where !entries.isEmpty {
            let (e, size) = entries.randomElement(using: &random)!
            try checkRead(ledger, e, size, mustExist: true)
        }
        let ledger = UInt64.random(in: Self.ledgers, using: &random)
        let never = model.nextEntry[ledger, default: 0] + Int64.random(in: 0...3, using: &random)
        try checkRead(ledger, never, 0, mustExist: false, neverWritten: true)
    }

    private func checkRead(_ ledger: UInt64, _ e: Int64, _ size: Int, mustExist: Bool, neverWritten: Bool = false) throws {
        let answer = bookie.readEntryBlocking(ledger: LedgerID(ledger), entry: EntryID(e))
        switch answer {
        case .entry(let bytes):
            if neverWritten { throw fail("read of never-written \(ledger)/\(e) returned \(bytes.count) bytes") }
            guard bytes == Self.entryBytes(ledger, e, size) else { throw fail("read of \(ledger)/\(e) returned other bytes") }
        case .failed(.noEntry, _), .failed(.noLedger, _):
            if mustExist && !rotten { throw fail("acknowledged \(ledger)/\(e) is lost: \(answer)") }
        case .failed(.corruptEntry, _) where rotten, .failed(.ioError, _) where rotten:
            break
        default:
            throw fail("read of \(ledger)/\(e) answered \(answer)")
        }
    }
}
