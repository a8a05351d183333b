import DLogWire

extension Bookie {
    public typealias Reply = @Sendable (BookieResponse) -> Void

    /// ADD: checks the entry's CRC, the master key, fencing and read-only state; answers after the journal
    /// made the entry durable.
    public func add(masterKey: MasterKey, entry: [UInt8], recovery: Bool, reply: @escaping Reply) {
        let header: EntryHeader
        do {
            header = try EntryCodec.validate(entry)
        } catch {
            return reply(.failed(.corruptEntry, message: "\(error)"))
        }
        let ledger = header.ledger
        if isReadOnly && !recovery {
            return reply(.failed(.readOnly, message: "bookie is read-only (disk usage over threshold); add refused"))
        }
        enum Admission { case ok(newLedger: Bool), refused(BookieStatus, String) }
        let admission: Admission = storage.withLedgers { ledgers, overLimit in
            if overLimit { return .refused(.tooManyRequests, "write cache is full; checkpoint in progress") }
            guard let ls = ledgers[ledger.rawValue] else {
                ledgers[ledger.rawValue] = LedgerState(masterKey: masterKey.bytes)
                return .ok(newLedger: true)
            }
            if ls.masterKey != masterKey.bytes { return .refused(.unauthorized, "master key mismatch for \(ledger)") }
            if ls.fenced && !recovery { return .refused(.fenced, "\(ledger) is fenced") }
            return .ok(newLedger: false)
        }
        guard case .ok(let newLedger) = admission else {
            if case .refused(let status, let message) = admission { reply(.failed(status, message: message)) }
            return
        }
        let journal = journal(for: ledger)
        if newLedger {
            var payload = [UInt8]()
            payload.appendBigEndian(ledger.rawValue)
            payload += masterKey.bytes
            if let refusal = journal.append(JournalRecord(kind: .masterKey, payload: payload), completion: nil) {
                return reply(Self.failure(refusal))
            }
        }
        let entryID = header.entry
        if let refusal = journal.append(JournalRecord(kind: .add, payload: entry), completion: { result in
            switch result {
            case .success: reply(.added(ledger: ledger, entry: entryID))
            case .failure(let error): reply(Self.failure(error))
            }
        }) {
            reply(Self.failure(refusal))
        }
    }

    /// Fences (when asked) and then reads. The fence is durable in the journal before the answer.
    public func fenceAndRead(ledger: LedgerID, entry: EntryID, masterKey: MasterKey, reply: @escaping Reply,
                             read: @escaping @Sendable () -> Void) {
        let refused: BookieResponse? = storage.withLedgers { ledgers, _ in
            if let ls = ledgers[ledger.rawValue], ls.masterKey != masterKey.bytes {
                return .failed(.unauthorized, message: "master key mismatch for \(ledger)")
            }
            ledgers[ledger.rawValue, default: LedgerState(masterKey: masterKey.bytes)].fenced = true
            return nil
        }
        if let refused { return reply(refused) }
        var payload = [UInt8]()
        payload.appendBigEndian(ledger.rawValue)
        payload += masterKey.bytes
        if let refusal = journal(for: ledger).append(JournalRecord(kind: .fence, payload: payload), completion: { result in
            switch result {
            case .success: read()
            case .failure(let error): reply(Self.failure(error))
            }
        }) {
            reply(Self.failure(refusal))
        }
    }

    public func writeLAC(ledger: LedgerID, masterKey: MasterKey, lac: EntryID, reply: @escaping Reply) {
        guard let ls = storage.ledgerState(ledger) else {
            return reply(.failed(.noLedger, message: "\(ledger) is not on this bookie"))
        }
        guard ls.masterKey == masterKey.bytes else {
            return reply(.failed(.unauthorized, message: "master key mismatch for \(ledger)"))
        }
        var payload = [UInt8]()
        payload.appendBigEndian(ledger.rawValue)
        payload.appendBigEndian(lac.rawValue)
        if let refusal = journal(for: ledger).append(JournalRecord(kind: .explicitLAC, payload: payload), completion: { r in
            reply((try? r.get()) != nil ? .done : Self.failure(JournalError.failed("journal failed")))
        }) {
            reply(Self.failure(refusal))
        }
    }

    public func deleteLedger(_ ledger: LedgerID, reply: @escaping Reply) {
        guard storage.ledgerState(ledger) != nil else {
            return reply(.failed(.noLedger, message: "\(ledger) is not on this bookie"))
        }
        var payload = [UInt8]()
        payload.appendBigEndian(ledger.rawValue)
        if let refusal = journal(for: ledger).append(JournalRecord(kind: .delete, payload: payload), completion: { r in
            reply((try? r.get()) != nil ? .done : Self.failure(JournalError.failed("journal failed")))
        }) {
            reply(Self.failure(refusal))
        }
    }

    /// READ_LAC, answered now or (long poll) once LAC passes `previous`. Returns a cancel token for the
    /// caller's timeout, nil when already answered.
    public func readLAC(ledger: LedgerID, longPollPrevious: EntryID?, reply: @escaping Reply) -> UInt64? {
        guard let previous = longPollPrevious else {
            guard let ls = storage.ledgerState(ledger) else {
                reply(.failed(.noLedger, message: "\(ledger) is not on this bookie"))
                return nil
            }
            reply(.lac(lac: EntryID(ls.lac), lastEntry: EntryID(ls.lastEntry)))
            return nil
        }
        return storage.watch(ledger, previous: previous.rawValue) { lac, last in
            reply(.lac(lac: EntryID(lac), lastEntry: EntryID(last)))
        }
    }

    /// The timeout of a long poll: answers with the current LAC unless the watcher already fired.
    public func expireLongPoll(ledger: LedgerID, token: UInt64, reply: Reply) {
        guard storage.cancelWatch(ledger, id: token) else { return }
        let ls = storage.ledgerState(ledger)
        reply(.lac(lac: EntryID(ls?.lac ?? -1), lastEntry: EntryID(ls?.lastEntry ?? -1)))
    }

    /// Reads one entry, verifying its CRC. Blocking when the entry is on disk: call off the event loop.
    public func readEntry(ledger: LedgerID, entry: EntryID) -> BookieResponse {
        let (resolved, found) = storage.readCached(ledger, entry)
        let bytes: [UInt8]
        switch found {
        case .noLedger: return .failed(.noLedger, message: "\(ledger) is not on this bookie")
        case .noEntry: return .failed(.noEntry, message: "\(ledger)/\(resolved) is not on this bookie")
        case .found(let b): bytes = b
        case .onDisk(let files):
            do {
                guard let b = try storage.readFromDisk(ledger, resolved, files: files) else {
                    return .failed(.noEntry, message: "\(ledger)/\(resolved) is not on this bookie")
                }
                bytes = b
            } catch {
                logger.error("entry read failed", metadata: ["ledger": "\(ledger)", "entry": "\(resolved)",
                                                             "error": "\(error)"])
                return .failed(.ioError, message: "reading \(ledger)/\(resolved): \(error)")
            }
        }
        do {
            let header = try EntryCodec.validate(bytes)
            guard header.ledger == ledger, header.entry == resolved else {
                return .failed(.corruptEntry, message: "stored bytes for \(ledger)/\(resolved) name \(header.ledger)/\(header.entry)")
            }
        } catch {
            logger.error("stored entry is corrupt", metadata: ["ledger": "\(ledger)", "entry": "\(resolved)",
                                                               "error": "\(error)"])
            return .failed(.corruptEntry, message: "stored copy of \(ledger)/\(resolved) is corrupt: \(error)")
        }
        return .entry(bytes)
    }

    /// Whether a read can be answered from memory without blocking.
    public func isCached(ledger: LedgerID, entry: EntryID) -> Bool {
        if case .onDisk = storage.readCached(ledger, entry).1 { return false }
        return true
    }

    static func failure(_ error: JournalError) -> BookieResponse {
        switch error {
        case .queueFull: return .failed(.tooManyRequests, message: "journal queue is full; retry later")
        case .stopped: return .failed(.shuttingDown, message: "bookie is shutting down")
        case .failed(let why): return .failed(.ioError, message: "journal failed: \(why)")
        }
    }
}
