import NIOCore

extension BookieRequest {
    /// About the bytes `encode` appends, at least as many for every request (its frame header, master key and
    /// fields fit in 64): a writer sizes its buffer for a batch of requests once.
    public var encodedSizeEstimate: Int {
        switch self {
        case .add(_, let entry, _): return 64 + entry.count
        case .addBatch(_, let entries, _): return entries.reduce(64) { $0 + 4 + $1.count }
        default: return 64
        }
    }

    /// Appends this request as one frame.
    public func encode(requestID: UInt64, into buffer: inout ByteBuffer) {
        var flags: UInt16 = 0
        switch self {
        case .add(_, _, let recovery), .addBatch(_, _, let recovery): if recovery { flags |= BookieFlags.recoveryAdd }
        case .read(_, _, let key): if key != nil { flags |= BookieFlags.fence }
        case .readLAC(_, let poll?):
            flags |= BookieFlags.longPoll
            if poll.withEntry { flags |= BookieFlags.longPollEntry }
        default: break
        }
        let header = FrameHeader(op: op.rawValue, flagsOrStatus: flags, requestID: requestID)
        buffer.writeFrame(header) { body in
            switch self {
            case .add(let key, let entry, _):
                body.writeMasterKey(key)
                body.writeBytes(entry)
            case .read(let ledger, let entry, let key):
                body.writeInteger(ledger.rawValue)
                body.writeInteger(entry.rawValue)
                if let key { body.writeMasterKey(key) }
            case .readLAC(let ledger, let poll):
                body.writeInteger(ledger.rawValue)
                if let poll {
                    body.writeInteger(poll.previous.rawValue)
                    body.writeInteger(poll.timeoutMilliseconds)
                }
            case .writeLAC(let ledger, let key, let lac):
                body.writeInteger(ledger.rawValue)
                body.writeMasterKey(key)
                body.writeInteger(lac.rawValue)
            case .deleteLedger(let ledger):
                body.writeInteger(ledger.rawValue)
            case .getInfo:
                break
            case .listEntries(let ledger, let from, let rangesMax):
                body.writeInteger(ledger.rawValue)
                body.writeInteger(from.rawValue)
                body.writeInteger(rangesMax)
            case .ledgerKey(let ledger):
                body.writeInteger(ledger.rawValue)
            case .readRange(let ledger, let first, let last, let maxBytes):
                body.writeInteger(ledger.rawValue)
                body.writeInteger(first.rawValue)
                body.writeInteger(last.rawValue)
                body.writeInteger(maxBytes)
            case .addBatch(let key, let entries, _):
                body.writeMasterKey(key)
                body.writeInteger(UInt32(entries.count))
                for entry in entries {
                    body.writeInteger(UInt32(entry.count))
                    body.writeBytes(entry)
                }
            }
        }
    }

    /// Parses a request frame. Every field is length-checked; extra bytes are an error.
    public static func decode(_ frame: Frame) throws(ProtocolError) -> BookieRequest {
        guard let op = BookieOp(rawValue: frame.header.op) else {
            throw ProtocolError("unknown operation \(frame.header.op)")
        }
        var body = frame.body
        let flags = frame.header.flagsOrStatus
        let request: BookieRequest
        switch op {
        case .add:
            let key = try body.readMasterKey()
            guard body.readableBytes >= EntryHeader.byteCount else {
                throw ProtocolError("ADD carries \(body.readableBytes) entry bytes, fewer than the 36-byte entry header")
            }
            request = .add(masterKey: key, entry: body.readBytes(length: body.readableBytes)!,
                           recovery: flags & BookieFlags.recoveryAdd != 0)
        case .read:
            let ledger = try body.readField(UInt64.self, "READ ledger")
            let entry = try body.readField(Int64.self, "READ entry")
            let key = flags & BookieFlags.fence != 0 ? try body.readMasterKey() : nil
            request = .read(ledger: LedgerID(ledger), entry: EntryID(entry), fenceWith: key)
        case .readLAC:
            let ledger = try body.readField(UInt64.self, "READ_LAC ledger")
            var poll: LongPoll? = nil
            if flags & BookieFlags.longPoll != 0 {
                let previous = try body.readField(Int64.self, "READ_LAC previous")
                let timeout = try body.readField(UInt32.self, "READ_LAC timeout")
                poll = LongPoll(previous: EntryID(previous), timeoutMilliseconds: timeout,
                                withEntry: flags & BookieFlags.longPollEntry != 0)
            }
            request = .readLAC(ledger: LedgerID(ledger), longPoll: poll)
        case .writeLAC:
            let ledger = try body.readField(UInt64.self, "WRITE_LAC ledger")
            let key = try body.readMasterKey()
            let lac = try body.readField(Int64.self, "WRITE_LAC lac")
            request = .writeLAC(ledger: LedgerID(ledger), masterKey: key, lac: EntryID(lac))
        case .deleteLedger:
            request = .deleteLedger(ledger: LedgerID(try body.readField(UInt64.self, "DELETE_LEDGER ledger")))
        case .getInfo:
            request = .getInfo
        case .listEntries:
            let ledger = try body.readField(UInt64.self, "LIST_ENTRIES ledger")
            let from = try body.readField(Int64.self, "LIST_ENTRIES from")
            let rangesMax = try body.readField(UInt32.self, "LIST_ENTRIES ranges max")
            guard rangesMax >= 1 else { throw ProtocolError("LIST_ENTRIES asks for at most 0 ranges") }
            request = .listEntries(ledger: LedgerID(ledger), from: EntryID(from), rangesMax: rangesMax)
        case .ledgerKey:
            request = .ledgerKey(ledger: LedgerID(try body.readField(UInt64.self, "LEDGER_KEY ledger")))
        case .readRange:
            let ledger = try body.readField(UInt64.self, "READ_RANGE ledger")
            let first = try body.readField(Int64.self, "READ_RANGE first")
            let last = try body.readField(Int64.self, "READ_RANGE last")
            let maxBytes = try body.readField(UInt32.self, "READ_RANGE max bytes")
            guard first >= 0, first <= last else {
                throw ProtocolError("READ_RANGE range \(first)-\(last) is not a range of entry ids")
            }
            request = .readRange(ledger: LedgerID(ledger), first: EntryID(first), last: EntryID(last), maxBytes: maxBytes)
        case .addBatch:
            let key = try body.readMasterKey()
            let count = try body.readField(UInt32.self, "ADD_BATCH count")
            guard count >= 1 else { throw ProtocolError("ADD_BATCH carries no entry") }
            // Each entry takes at least its length and header: a count the frame cannot hold is refused before
            // anything is reserved for it.
            guard Int(count) <= body.readableBytes / (4 + EntryHeader.byteCount) else {
                throw ProtocolError("ADD_BATCH says \(count) entries but carries \(body.readableBytes) bytes")
            }
            var entries: [[UInt8]] = []
            entries.reserveCapacity(Int(count))
            for i in 0..<count {
                let length = try body.readField(UInt32.self, "ADD_BATCH entry \(i) length")
                guard length >= EntryHeader.byteCount, let entry = body.readBytes(length: Int(length)) else {
                    throw ProtocolError("ADD_BATCH entry \(i) of \(length) bytes: shorter than the 36-byte entry header, or the frame ends early")
                }
                entries.append(entry)
            }
            request = .addBatch(masterKey: key, entries: entries, recovery: flags & BookieFlags.recoveryAdd != 0)
        }
        guard body.readableBytes == 0 else {
            throw ProtocolError("\(op) request has \(body.readableBytes) unexpected trailing bytes")
        }
        return request
    }
}

extension BookieResponse {
    public func encode(op: BookieOp, requestID: UInt64, into buffer: inout ByteBuffer) {
        let status: BookieStatus
        if case .failed(let s, _) = self { status = s } else { status = .ok }
        let header = FrameHeader(op: op.rawValue | FrameHeader.responseBit, flagsOrStatus: status.rawValue,
                                 requestID: requestID)
        buffer.writeFrame(header) { body in
            switch self {
            case .added(let ledger, let entry):
                body.writeMultipleIntegers(ledger.rawValue, entry.rawValue)
            case .entry(let bytes):
                body.writeBytes(bytes)
            case .lac(let lac, let last):
                body.writeInteger(lac.rawValue)
                body.writeInteger(last.rawValue)
            case .lacAndEntry(let lac, let last, let entry):
                body.writeInteger(lac.rawValue)
                body.writeInteger(last.rawValue)
                body.writeBytes(entry)
            case .done:
                break
            case .info(let json):
                body.writeString(json)
            case .entries(let ranges, let next):
                body.writeInteger(next?.rawValue ?? -1)
                body.writeInteger(UInt32(ranges.count))
                for range in ranges {
                    body.writeInteger(range.first.rawValue)
                    body.writeInteger(range.last.rawValue)
                }
            case .masterKey(let key):
                body.writeMasterKey(key)
            case .entryBatch(let entries, let next):
                body.writeInteger(next?.rawValue ?? -1)
                body.writeInteger(UInt32(entries.count))
                for entry in entries {
                    body.writeInteger(UInt32(entry.count))
                    body.writeBytes(entry)
                }
            case .addedBatch(let count):
                body.writeInteger(count)
            case .failed(_, let message):
                body.writeString(message)
            }
        }
    }

    /// Parses a response frame for a request of operation `op`.
    public static func decode(_ frame: Frame) throws(ProtocolError) -> (BookieOp, BookieResponse) {
        guard frame.header.isResponse, let op = BookieOp(rawValue: frame.header.op & ~FrameHeader.responseBit) else {
            throw ProtocolError("frame op \(frame.header.op) is not a bookie response")
        }
        guard let status = BookieStatus(rawValue: frame.header.flagsOrStatus) else {
            throw ProtocolError("unknown status code \(frame.header.flagsOrStatus)")
        }
        var body = frame.body
        if status != .ok {
            return (op, .failed(status, message: body.readString(length: body.readableBytes) ?? ""))
        }
        let response: BookieResponse
        switch op {
        case .add:
            let ledger = try body.readField(UInt64.self, "ADD response ledger")
            let entry = try body.readField(Int64.self, "ADD response entry")
            response = .added(ledger: LedgerID(ledger), entry: EntryID(entry))
        case .read:
            response = .entry(body.readBytes(length: body.readableBytes)!)
        case .readLAC:
            let lac = try body.readField(Int64.self, "READ_LAC response lac")
            let last = try body.readField(Int64.self, "READ_LAC response last entry")
            // Bytes after the two fields: the entry a `longPollEntry` poll asked for.
            response = body.readableBytes == 0 ? .lac(lac: EntryID(lac), lastEntry: EntryID(last))
                : .lacAndEntry(lac: EntryID(lac), lastEntry: EntryID(last), entry: body.readBytes(length: body.readableBytes)!)
        case .writeLAC, .deleteLedger:
            response = .done
        case .getInfo:
            response = .info(json: body.readString(length: body.readableBytes) ?? "")
        case .listEntries:
            let next = try body.readField(Int64.self, "LIST_ENTRIES response next")
            let count = try body.readField(UInt32.self, "LIST_ENTRIES response count")
            guard Int(count) * 16 == body.readableBytes else {
                throw ProtocolError("LIST_ENTRIES response says \(count) ranges but carries \(body.readableBytes) bytes")
            }
            var ranges: [EntryRange] = []
            ranges.reserveCapacity(Int(count))
            for _ in 0..<count {
                let first = try body.readField(Int64.self, "LIST_ENTRIES range first")
                let last = try body.readField(Int64.self, "LIST_ENTRIES range last")
                guard first >= 0, first <= last, ranges.last.map({ first > $0.last.rawValue + 1 }) ?? true else {
                    throw ProtocolError("LIST_ENTRIES response range \(first)-\(last) is not ascending, disjoint and apart")
                }
                ranges.append(EntryRange(EntryID(first), EntryID(last)))
            }
            guard next >= -1 else { throw ProtocolError("LIST_ENTRIES response next \(next) is below -1") }
            response = .entries(ranges: ranges, next: next < 0 ? nil : EntryID(next))
        case .ledgerKey:
            response = .masterKey(try body.readMasterKey())
        case .readRange:
            let next = try body.readField(Int64.self, "READ_RANGE response next")
            let count = try body.readField(UInt32.self, "READ_RANGE response count")
            guard next >= -1 else { throw ProtocolError("READ_RANGE response next \(next) is below -1") }
            guard Int(count) <= body.readableBytes / 4 else {
                throw ProtocolError("READ_RANGE response says \(count) entries but carries \(body.readableBytes) bytes")
            }
            var entries: [[UInt8]] = []
            entries.reserveCapacity(Int(count))
            for i in 0..<count {
                let length = try body.readField(UInt32.self, "READ_RANGE response entry \(i) length")
                guard let entry = body.readBytes(length: Int(length)) else {
                    throw ProtocolError("READ_RANGE response entry \(i) of \(length) bytes: the frame ends early")
                }
                entries.append(entry)
            }
            response = .entryBatch(entries: entries, next: next < 0 ? nil : EntryID(next))
        case .addBatch:
            response = .addedBatch(count: try body.readField(UInt32.self, "ADD_BATCH response count"))
        }
        guard body.readableBytes == 0 else {
            throw ProtocolError("\(op) response has \(body.readableBytes) unexpected trailing bytes")
        }
        return (op, response)
    }
}

extension ByteBuffer {
    mutating func readField<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws(ProtocolError) -> T {
        guard let v = readInteger(as: T.self) else { throw ProtocolError("\(what): frame ends early") }
        return v
    }

    mutating func readMasterKey() throws(ProtocolError) -> MasterKey {
        guard let (high, middle, low) = readMultipleIntegers(as: (UInt64, UInt64, UInt32).self) else {
            throw ProtocolError("master key: frame ends early")
        }
        return MasterKey(high: high, middle: middle, low: low)
    }

    mutating func writeMasterKey(_ key: MasterKey) {
        writeMultipleIntegers(key.high, key.middle, key.low)
    }
}
