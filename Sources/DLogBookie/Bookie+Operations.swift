import DLogWire
import Logging

extension Bookie {
    public typealias Reply = @Sendable (BookieResponse) -> Void

    /// ADD: checks the entry's CRC, size, the master key, fencing and read-only state; answers after the
    /// journal made the entry durable.
    ///
    /// The checks and the journal append are one step of the storage's core (`LedgerStorage.take`): the order in which
    /// adds, fences and deletes pass their checks is the order of their journal records. So no add that
    /// was checked before a fence can be journaled (and acknowledged) after it, and a new ledger's key
    /// record always precedes its first add.
    public func add(masterKey: MasterKey, entry: [UInt8], recovery: Bool, reply: @escaping Reply) {
        add(masterKey: masterKey, entry: entry, recovery: recovery, answer: .reply(reply))
    }

    func add(masterKey: MasterKey, entry: [UInt8], recovery: Bool, answer reply: Answer) {
        guard let header = check(add: entry, recovery: recovery, answer: reply) else { return }
        let ledger = header.ledger
        let journal = journal(for: ledger)
        let completion = JournalCompletion.answerAdd(reply, ledger, header.entry)
        let request = LedgerCore.Request.add(ledger, key: masterKey, piggybackedLAC: header.lastAddConfirmed.rawValue,
                                             recovery: recovery)
        let taken = storage.take(request) { withKey in
            let add = JournalRecord(kind: .add, payload: entry)
            guard withKey else { return journal.append(add, then: completion) }
            let key = JournalRecord(kind: .masterKey, payload: Self.ledgerPayload(ledger, masterKey))
            return journal.append([key, add], then: completion)
        }
        if case .failure(let refusal) = taken { reply(answer(refusal, ledger)) }
    }

    /// An add's checks that need no ledger state: the CRC, the entry id, the size, read-only. Answers the failure
    /// and returns nil when one fails.
    func check(add entry: [UInt8], recovery: Bool, answer reply: Answer) -> EntryHeader? {
        let header: EntryHeader
        do {
            header = try EntryCodec.validate(entry)
        } catch {
            reply(.failed(.corruptEntry, message: "\(error)"))
            return nil
        }
        // Entry ids start at 0; on READ only -1 has a meaning ("the last"), so a negative id could never be
        // read back.
        guard header.entry.rawValue >= 0 else {
            reply(.failed(.badRequest, message: "entry id \(header.entry.rawValue) of \(header.ledger) is "
                                       + "negative; entry ids start at 0"))
            return nil
        }
        let limit = journal(for: header.ledger).configuration.recordBytesMax
        guard entry.count <= limit else {
            reply(.failed(.tooLarge, message: "entry of \(entry.count) bytes exceeds the journal's record "
                                       + "limit of \(limit)"))
            return nil
        }
        if isReadOnly && !recovery {
            reply(.failed(.readOnly, message: "bookie is read-only (\(readOnlyReason)); add refused"))
            return nil
        }
        return header
    }

    /// Fences and then reads (through `read`). The fence is durable in the journal before the answer, and
    /// it is journaled in the same step that makes later adds see it (see `add`).
    public func fenceAndRead(ledger: LedgerID, entry: EntryID, masterKey: MasterKey, reply: @escaping Reply,
                             read: @escaping @Sendable () -> Void) {
        let journal = journal(for: ledger)
        let taken = storage.take(.fence(ledger, key: masterKey)) { _ in
            journal.append([JournalRecord(kind: .fence, payload: Self.ledgerPayload(ledger, masterKey))]) { result in
                switch result {
                case .success: read()
                case .failure(let error): reply(Self.failure(error))
                }
            }
        }
        if case .failure(let refusal) = taken { reply(answer(refusal, ledger)) }
    }

    /// The answer to a request `LedgerStorage.take` (or WRITE_LAC) refused.
    func answer(_ refusal: LedgerStorage.Refusal, _ ledger: LedgerID) -> BookieResponse {
        switch refusal {
        case .journal(let error):
            return Self.failure(error)
        case .core(.cacheFull):
            let why = lastCheckpointError.withLock { $0 }.map { "checkpoints are failing: \($0)" }
                ?? "a checkpoint is in progress"
            return .failed(.tooManyRequests, message: "write cache is full; \(why)")
        case .core(.keyMismatch):
            return .failed(.unauthorized, message: "master key mismatch for \(ledger)")
        case .core(.fenced):
            return .failed(.fenced, message: "\(ledger) is fenced")
        case .core(.noLedger):
            return .failed(.noLedger, message: "\(ledger) is not on this bookie")
        }
    }

    static func ledgerPayload(_ ledger: LedgerID, _ key: MasterKey) -> [UInt8] {
        var payload = [UInt8]()
        payload.appendBigEndian(ledger.rawValue)
        return payload + key.bytes
    }

    /// WRITE_LAC: answered at once, with no journal record: the value lives in memory and in the next
    /// checkpoint (see `LedgerState.explicitLAC`). Long polls hear it at once.
    public func writeLAC(ledger: LedgerID, masterKey: MasterKey, lac: EntryID, reply: @escaping Reply) {
        reply(storage.writeLAC(ledger, key: masterKey, lac: lac).map { answer(.core($0), ledger) } ?? .done)
    }

    /// DELETE_LEDGER: the ledger and its entries are gone for later requests at once (dropped in the same step
    /// its delete record is journaled); files go once checkpoints no longer list them. An add after this
    /// creates the ledger anew, journaled after the delete, and holds nothing of the deleted one.
    public func deleteLedger(_ ledger: LedgerID, reply: @escaping Reply) {
        let journal = journal(for: ledger)
        var payload = [UInt8]()
        payload.appendBigEndian(ledger.rawValue)
        let taken = storage.take(.delete(ledger)) { _ in
            journal.append([JournalRecord(kind: .delete, payload: payload)]) { r in
                switch r {
                case .success: reply(.done)
                case .failure(let error): reply(Self.failure(error))
                }
            }
        }
        if case .failure(let refusal) = taken { reply(answer(refusal, ledger)) }
    }

    /// READ_LAC, answered now or (long poll) once LAC passes `previous`. Returns a cancel token for the
    /// caller's timeout, nil when already answered.
    public func readLAC(ledger: LedgerID, longPollPrevious: EntryID?, withEntry: Bool = false, reply: @escaping Reply) -> UInt64? {
        guard let previous = longPollPrevious else {
            guard let ls = storage.ledgerState(ledger) else {
                reply(.failed(.noLedger, message: "\(ledger) is not on this bookie"))
                return nil
            }
            reply(.lac(lac: EntryID(ls.lac), lastEntry: EntryID(ls.lastEntry)))
            return nil
        }
        return storage.watch(ledger, previous: previous.rawValue) { [self] lac, last in
            // The entry after `previous`, when asked for, covered by the LAC and already in memory here (a reader
            // that keeps up asks for the newest): its READ is saved. Not stored here yet (this bookie's sync lags
            // the quorum's) or only on disk, the LAC goes alone and the reader reads the entry elsewhere.
            let next = EntryID(previous.rawValue + 1)
            if withEntry, lac >= next.rawValue, case (_, .found(let bytes)) = storage.readCached(ledger, next),
               case .entry(let checked) = checked(bytes, ledger, next) {
                return reply(.lacAndEntry(lac: EntryID(lac), lastEntry: EntryID(last), entry: checked))
            }
            reply(.lac(lac: EntryID(lac), lastEntry: EntryID(last)))
        }
    }

    /// The timeout of a long poll: answers with the current LAC unless the watcher already fired.
    public func expireLongPoll(ledger: LedgerID, token: UInt64, reply: Reply) {
        guard storage.cancelWatch(ledger, id: token) else { return }
        let ls = storage.ledgerState(ledger)
        reply(.lac(lac: EntryID(ls?.lac ?? -1), lastEntry: EntryID(ls?.lastEntry ?? -1)))
    }

    /// Whether a long poll still waits for its LAC (it was neither answered nor expired).
    func isWaiting(longPoll token: UInt64, of ledger: LedgerID) -> Bool {
        storage.isWatching(ledger, id: token)
    }

    /// A long poll whose connection closed: its watch goes, unanswered.
    func abandonLongPoll(ledger: LedgerID, token: UInt64) {
        _ = storage.cancelWatch(ledger, id: token)
    }

    /// What a read needs: an answer now, or a disk read (which must run off the event loop).
    public enum ReadStep: Sendable {
        case answer(BookieResponse)
        case disk(@Sendable () -> BookieResponse)
    }

    /// Looks an entry up once: in memory the answer is immediate; otherwise the returned closure does the
    /// blocking entry-log read. Every answer's CRC is verified.
    public func readEntry(ledger: LedgerID, entry: EntryID) -> ReadStep {
        let (resolved, found) = storage.readCached(ledger, entry)
        switch found {
        case .noLedger: return .answer(.failed(.noLedger, message: "\(ledger) is not on this bookie"))
        case .noEntry: return .answer(.failed(.noEntry, message: "\(ledger)/\(resolved) is not on this bookie"))
        case .found(let bytes): return .answer(checked(bytes, ledger, resolved))
        case .onDisk(let files):
            return .disk { [self] in
                defer { reportRepairs() }
                do {
                    guard let stored = try storage.readFromDisk(ledger, resolved, files: files) else {
                        return .failed(.noEntry, message: "\(ledger)/\(resolved) is not on this bookie")
                    }
                    return checked(stored.bytes, ledger, resolved, at: "\(stored.path) offset \(stored.offset)")
                } catch {
                    // One line per damaged file, not one per read of it.
                    let path = (error as? StorageCorruption)?.path
                    if path.map({ p in loggedDamage.withLock { $0.insert(p).inserted } }) ?? true {
                        logger.error("entry read failed", metadata: ["ledger": "\(ledger)", "entry": "\(resolved)",
                                                                     "error": "\(error)"])
                    }
                    return .failed(.ioError, message: "reading \(ledger)/\(resolved): \(error)")
                }
            }
        }
    }

    /// LIST_ENTRIES: which entries of `ledger` this bookie stores (see `LedgerStorage.storedEntries`).
    /// Blocking: run it off the event loop.
    /// LEDGER_KEY: the master key stored for `ledger`. A replication worker writes its copies with it, so the
    /// copies answer the ledger's own clients (fencing, recovery adds) as the originals do.
    public func ledgerKey(_ ledger: LedgerID) -> BookieResponse {
        guard let state = storage.ledgerState(ledger), let key = MasterKey(bytes: state.masterKey) else {
            return .failed(.noLedger, message: "\(ledger) is not on this bookie")
        }
        return .masterKey(key)
    }

    public func listEntries(ledger: LedgerID, from: EntryID, rangesMax: UInt32) -> BookieResponse {
        do {
            // A bound on the answer's size whatever the client asks: 65,536 ranges are 1 MiB.
            guard let (ranges, next) = try storage.storedEntries(ledger, from: from, rangesMax: Int(min(rangesMax, 65_536))) else {
                return .failed(.noLedger, message: "\(ledger) is not on this bookie")
            }
            return .entries(ranges: ranges, next: next)
        } catch {
            return .failed(.ioError, message: "listing the entries of \(ledger): \(error)")
        }
    }

    /// Reads an entry on the calling thread (tools and tests; may block on disk).
    public func readEntryBlocking(ledger: LedgerID, entry: EntryID) -> BookieResponse {
        switch readEntry(ledger: ledger, entry: entry) {
        case .answer(let r): return r
        case .disk(let read): return read()
        }
    }

    /// `location`: the entry-log file and offset the bytes came from (nil: the write cache).
    func checked(_ bytes: [UInt8], _ ledger: LedgerID, _ entry: EntryID, at location: String? = nil) -> BookieResponse {
        let where_ = location ?? "the write cache"
        do {
            let header = try EntryCodec.validate(bytes)
            guard header.ledger == ledger, header.entry == entry else {
                logger.error("stored entry names another entry", metadata: [
                    "ledger": "\(ledger)", "entry": "\(entry)", "at": "\(where_)",
                    "names": "\(header.ledger)/\(header.entry)"])
                return .failed(.corruptEntry, message: "stored bytes for \(ledger)/\(entry) in \(where_) name "
                                   + "\(header.ledger)/\(header.entry)")
            }
        } catch {
            logger.error("stored entry is corrupt", metadata: ["ledger": "\(ledger)", "entry": "\(entry)",
                                                               "at": "\(where_)", "error": "\(error)"])
            return .failed(.corruptEntry, message: "stored copy of \(ledger)/\(entry) in \(where_) is corrupt: \(error)")
        }
        return .entry(bytes)
    }

    /// Logs the entry-log indexes rebuilt since the last call: a warning each, an error where entries the
    /// manifest counts were not found.
    func reportRepairs() {
        for note in storage.takeRepairs() {
            let r = note.report
            var metadata: Logger.Metadata = [
                "file": "\(r.path)", "damage": "\(note.damage)", "entries": "\(r.entries)",
                "corruptEntries": "\(r.corruptEntries)", "droppedRecords": "\(r.droppedRecords)",
                "original": "\(r.quarantinedCopy)"]
            if r.missing.isEmpty {
                logger.warning("rebuilt a damaged entry-log index from the file's records", metadata: metadata)
            } else {
                metadata["missing"] = "\(r.missing.sorted { $0.key < $1.key }.map { "ledger \($0.key): \($0.value)" })"
                logger.error("rebuilt a damaged entry-log index; some entries could not be recovered", metadata: metadata)
            }
        }
    }

    static func failure(_ error: JournalError) -> BookieResponse {
        switch error {
        case .queueFull: return .failed(.tooManyRequests, message: "journal queue is full; retry later")
        case .stopped: return .failed(.shuttingDown, message: "bookie is shutting down")
        case .failed(let why): return .failed(.ioError, message: "journal failed: \(why)")
        }
    }
}
