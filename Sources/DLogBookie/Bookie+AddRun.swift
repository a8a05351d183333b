import DLogWire

extension Bookie {
    /// One ADD of a run (`add(run:)`).
    struct RunAdd {
        var key: MasterKey
        var entry: [UInt8]
        var recovery: Bool
        var answer: Answer
    }

    /// ADDs that arrived together, in one read of one connection: each is checked and answered as `add` does it,
    /// but the run is taken in one step per journal and shard (`LedgerStorage.take(adds:journal:)`), with one
    /// journal offer. Taken one by one, every add locked its shard and the journal's queue: at 32 × 16 adds of
    /// 100 B, about 6% of the bookie's CPU went to waiting for those locks (the locks' slow path and the futex
    /// calls it makes).
    func add(run: [RunAdd]) {
        // A run is queued all or none, with up to a key record per add: one that could never fit a journal's
        // queue (`journal_queue_entries` set very low) is added one add at a time.
        guard run.count * 2 <= journals.lazy.map(\.configuration.queueCountMax).min()! else {
            for add in run { self.add(masterKey: add.key, entry: add.entry, recovery: add.recovery, answer: add.answer) }
            return
        }
        var checked: [(add: RunAdd, header: EntryHeader)] = []
        checked.reserveCapacity(run.count)
        for add in run {
            if let header = check(add: add.entry, recovery: add.recovery, answer: add.answer) { checked.append((add, header)) }
        }
        guard !checked.isEmpty else { return }
        if journals.count == 1 {
            take(checked, journal: journals[0])
        } else {
            var byJournal = [[(add: RunAdd, header: EntryHeader)]](repeating: [], count: journals.count)
            for c in checked { byJournal[Int(c.header.ledger.rawValue % UInt64(journals.count))].append(c) }
            for (j, adds) in byJournal.enumerated() where !adds.isEmpty { take(adds, journal: journals[j]) }
        }
    }

    /// Adds of one journal, checked: taken together, refusals answered.
    private func take(_ adds: [(add: RunAdd, header: EntryHeader)], journal: Journal) {
        let requests = adds.map {
            LedgerCore.Request.add($0.header.ledger, key: $0.add.key, piggybackedLAC: $0.header.lastAddConfirmed.rawValue,
                                   recovery: $0.add.recovery)
        }
        let results = storage.take(adds: requests) { accepted in
            var pending: [Journal.Pending] = []
            pending.reserveCapacity(accepted.count + 1)
            // The run is queued at one instant: one clock read for all of it, not one per add.
            let queued = JournalMeters.now
            // Each add is read in place: binding it whole (`let (add, header) = adds[i]`) copied its entry, key and
            // answer once more, a retain and a release each.
            for (i, withKey) in accepted {
                let header = adds[i].header
                if withKey {
                    let key = Self.ledgerPayload(header.ledger, adds[i].add.key)
                    pending.append(Journal.Pending(record: JournalRecord(kind: .masterKey, payload: key),
                                                   completion: nil, queued: queued))
                }
                pending.append(Journal.Pending(record: JournalRecord(kind: .add, payload: adds[i].add.entry),
                                               completion: .answerAdd(adds[i].add.answer, header.ledger, header.entry),
                                               queued: queued))
            }
            return journal.append(pending)
        }
        for (i, result) in results.enumerated() {
            if case .failure(let refusal) = result { adds[i].add.answer(answer(refusal, adds[i].header.ledger)) }
        }
    }
}
