import DLogWire
import NIOCore

/// The metadata role's operations on the common frame (docs/protocol.md, "Metadata role"). Opcodes start at
/// 0x41 so a frame sent to the wrong kind of server is refused as unknown, never misread.
///
/// Field encodings (big-endian): `str` = u16 length + UTF-8; `bytes` = u32 length + bytes; ranges are
/// `str start, u8 hasEnd, [str end]`. A response's status is a `MetadataStatus`; an error body carries the
/// error's structured fields (key and versions, lease id, revisions) or, for the other kinds, one `str` message.
public enum MetadataOp: UInt8, Sendable {
    case range = 0x41
    case commit = 0x42
    /// Streaming: every response with the request's id carries a batch of events; an error response ends it.
    case watch = 0x43
    case cancelWatch = 0x44
    case leaseGrant = 0x45
    case leaseKeepAlive = 0x46
    case leaseRevoke = 0x47
    case stats = 0x48
}

public enum MetadataStatus: UInt16, Sendable {
    case ok = 0
    case versionConflict = 1
    case keyExists = 2
    case noSuchKey = 3
    case leaseExpired = 4
    case unavailable = 5
    case compacted = 6
    case tooLarge = 7
    case invalidArgument = 8
    case internalError = 9
    case permissionDenied = 10
}

public enum MetadataRequest: Sendable, Hashable {
    case range(KeyRange, limit: Int)
    case commit(Transaction)
    case watch(KeyRange, from: Revision)
    /// Ends the watch started by the request with this id.
    case cancelWatch(UInt64)
    case leaseGrant(ttlSeconds: Int)
    case leaseKeepAlive(LeaseID)
    case leaseRevoke(LeaseID)
    case stats

    public var op: MetadataOp {
        switch self {
        case .range: return .range
        case .commit: return .commit
        case .watch: return .watch
        case .cancelWatch: return .cancelWatch
        case .leaseGrant: return .leaseGrant
        case .leaseKeepAlive: return .leaseKeepAlive
        case .leaseRevoke: return .leaseRevoke
        case .stats: return .stats
        }
    }
}

public enum MetadataReply: Sendable, Hashable {
    case range(RangePage)
    case committed(Revision)
    case events([WatchEvent])
    case lease(Lease)
    case ttl(Int)
    case done
    /// JSON text of the store's counters.
    case stats([UInt8])
}

// MARK: Requests

extension MetadataRequest {
    public func encode(requestID: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeFrame(FrameHeader(op: op.rawValue, flagsOrStatus: 0, requestID: requestID)) { body in
            switch self {
            case .range(let range, let limit):
                body.writeRange(range)
                body.writeInteger(UInt32(clamping: limit))
            case .commit(let transaction):
                body.writeInteger(UInt16(transaction.checks.count))
                for check in transaction.checks {
                    body.writeKey(check.key)
                    body.writeInteger(check.version.rawValue)
                }
                body.writeInteger(UInt16(transaction.operations.count))
                for operation in transaction.operations {
                    switch operation {
                    case .put(let key, let value, let lease):
                        body.writeInteger(WatchEvent.Kind.put.rawValue)
                        body.writeKey(key)
                        body.writeValue(value)
                        body.writeInteger(lease?.rawValue ?? 0)
                    case .delete(let key):
                        body.writeInteger(WatchEvent.Kind.delete.rawValue)
                        body.writeKey(key)
                    }
                }
            case .watch(let range, let from):
                body.writeRange(range)
                body.writeInteger(from.rawValue)
            case .cancelWatch(let id):
                body.writeInteger(id)
            case .leaseGrant(let ttl):
                body.writeInteger(UInt32(clamping: ttl))
            case .leaseKeepAlive(let id), .leaseRevoke(let id):
                body.writeInteger(id.rawValue)
            case .stats:
                break
            }
        }
    }

    /// Parses a request body. Every length is checked against what is there; trailing bytes are an error.
    public static func decode(_ frame: Frame) throws(MetadataError) -> MetadataRequest {
        guard let op = MetadataOp(rawValue: frame.header.op) else {
            throw .invalidArgument("unknown operation 0x\(String(frame.header.op, radix: 16)) for the metadata role")
        }
        var body = frame.body
        let request: MetadataRequest
        switch op {
        case .range:
            request = .range(try body.readRange(), limit: Int(try body.read(UInt32.self, "range limit")))
        case .commit:
            request = .commit(try body.readTransaction())
        case .watch:
            request = .watch(try body.readRange(), from: Revision(try body.read(Int64.self, "watch revision")))
        case .cancelWatch:
            request = .cancelWatch(try body.read(UInt64.self, "watch id"))
        case .leaseGrant:
            request = .leaseGrant(ttlSeconds: Int(try body.read(UInt32.self, "lease TTL")))
        case .leaseKeepAlive:
            request = .leaseKeepAlive(LeaseID(try body.read(Int64.self, "lease id")))
        case .leaseRevoke:
            request = .leaseRevoke(LeaseID(try body.read(Int64.self, "lease id")))
        case .stats:
            request = .stats
        }
        guard body.readableBytes == 0 else {
            throw .invalidArgument("\(op) request has \(body.readableBytes) unexpected trailing bytes")
        }
        return request
    }
}

// MARK: Replies

extension MetadataReply {
    public func encode(op: MetadataOp, requestID: UInt64, into buffer: inout ByteBuffer) {
        let header = FrameHeader(op: op.rawValue | FrameHeader.responseBit, flagsOrStatus: MetadataStatus.ok.rawValue,
                                 requestID: requestID)
        buffer.writeFrame(header) { body in
            switch self {
            case .range(let page):
                body.writeInteger(page.revision.rawValue)
                body.writeInteger(UInt8(page.more ? 1 : 0))
                body.writeInteger(UInt32(page.items.count))
                for item in page.items {
                    body.writeKey(item.key)
                    body.writeValue(item.value)
                    body.writeInteger(item.version.rawValue)
                    body.writeInteger(item.createRevision.rawValue)
                    body.writeInteger(item.lease?.rawValue ?? 0)
                }
            case .committed(let revision):
                body.writeInteger(revision.rawValue)
            case .events(let events):
                body.writeInteger(UInt32(events.count))
                for event in events {
                    body.writeInteger(event.kind.rawValue)
                    body.writeKey(event.key)
                    body.writeValue(event.value)
                    body.writeInteger(event.revision.rawValue)
                }
            case .lease(let lease):
                body.writeInteger(lease.id.rawValue)
                body.writeInteger(UInt32(clamping: lease.ttlSeconds))
            case .ttl(let ttl):
                body.writeInteger(UInt32(clamping: ttl))
            case .done:
                break
            case .stats(let json):
                body.writeBytes(json)
            }
        }
    }

    public static func decode(op: MetadataOp, body: ByteBuffer) throws(MetadataError) -> MetadataReply {
        var body = body
        switch op {
        case .range:
            let revision = Revision(try body.read(Int64.self, "revision"))
            let more = try body.read(UInt8.self, "more") != 0
            let count = Int(try body.read(UInt32.self, "item count"))
            var items: [KeyValue] = []
            items.reserveCapacity(Swift.min(count, MetadataLimits.rangeLimitMax))
            for _ in 0..<count {
                let key = try body.readKey()
                let value = try body.readValue()
                let version = Version(try body.read(Int64.self, "version"))
                let created = Revision(try body.read(Int64.self, "create revision"))
                let lease = try body.read(Int64.self, "lease")
                items.append(KeyValue(key: key, value: value, version: version, createRevision: created,
                                      lease: lease == 0 ? nil : LeaseID(lease)))
            }
            return .range(RangePage(items: items, more: more, revision: revision))
        case .commit:
            return .committed(Revision(try body.read(Int64.self, "revision")))
        case .watch:
            let count = Int(try body.read(UInt32.self, "event count"))
            var events: [WatchEvent] = []
            for _ in 0..<count {
                guard let kind = WatchEvent.Kind(rawValue: try body.read(UInt8.self, "event kind")) else {
                    throw .internalError("watch event of unknown kind")
                }
                let key = try body.readKey()
                let value = try body.readValue()
                events.append(WatchEvent(kind: kind, key: key, value: value,
                                         revision: Revision(try body.read(Int64.self, "event revision"))))
            }
            return .events(events)
        case .leaseGrant:
            let id = LeaseID(try body.read(Int64.self, "lease id"))
            return .lease(Lease(id: id, ttlSeconds: Int(try body.read(UInt32.self, "lease TTL"))))
        case .leaseKeepAlive:
            return .ttl(Int(try body.read(UInt32.self, "lease TTL")))
        case .cancelWatch, .leaseRevoke:
            return .done
        case .stats:
            return .stats(body.readBytes(length: body.readableBytes) ?? [])
        }
    }
}

// MARK: Errors

extension MetadataError {
    public var status: MetadataStatus {
        switch self {
        case .versionConflict: return .versionConflict
        case .keyExists: return .keyExists
        case .noSuchKey: return .noSuchKey
        case .leaseExpired: return .leaseExpired
        case .unavailable: return .unavailable
        case .compacted: return .compacted
        case .tooLarge: return .tooLarge
        case .invalidArgument: return .invalidArgument
        case .internalError: return .internalError
        case .permissionDenied: return .permissionDenied
        }
    }

    public func encode(op: UInt8, requestID: UInt64, into buffer: inout ByteBuffer) {
        let header = FrameHeader(op: op | FrameHeader.responseBit, flagsOrStatus: status.rawValue, requestID: requestID)
        buffer.writeFrame(header) { body in
            switch self {
            case .versionConflict(let key, let expected, let actual):
                body.writeKey(key)
                body.writeInteger(expected.rawValue)
                body.writeInteger(actual.rawValue)
            case .keyExists(let key), .noSuchKey(let key):
                body.writeKey(key)
            case .leaseExpired(let id):
                body.writeInteger(id.rawValue)
            case .compacted(let requested, let oldest):
                body.writeInteger(requested.rawValue)
                body.writeInteger(oldest.rawValue)
            case .unavailable(let message), .tooLarge(let message), .invalidArgument(let message),
                 .internalError(let message), .permissionDenied(let message):
                body.writeKey(String(message.prefix(4000)))
            }
        }
    }

    /// The error an error response carries; a malformed one becomes an `internalError` saying so.
    public static func decode(status: UInt16, body: ByteBuffer) -> MetadataError {
        var body = body
        do {
            guard let status = MetadataStatus(rawValue: status), status != .ok else {
                return .internalError("metadata server answered with unknown status \(status)")
            }
            switch status {
            case .ok: preconditionFailure()
            case .versionConflict:
                let key = try body.readKey()
                return .versionConflict(key: key, expected: Version(try body.read(Int64.self, "expected")),
                                        actual: Version(try body.read(Int64.self, "actual")))
            case .keyExists: return .keyExists(key: try body.readKey())
            case .noSuchKey: return .noSuchKey(key: try body.readKey())
            case .leaseExpired: return .leaseExpired(LeaseID(try body.read(Int64.self, "lease id")))
            case .compacted:
                return .compacted(requested: Revision(try body.read(Int64.self, "requested")),
                                  oldest: Revision(try body.read(Int64.self, "oldest")))
            case .unavailable: return .unavailable(try body.readKey())
            case .tooLarge: return .tooLarge(try body.readKey())
            case .invalidArgument: return .invalidArgument(try body.readKey())
            case .internalError: return .internalError(try body.readKey())
            case .permissionDenied: return .permissionDenied(try body.readKey())
            }
        } catch {
            return .internalError("malformed error response from the metadata server (\(error))")
        }
    }
}

// MARK: Field helpers

extension ByteBuffer {
    mutating func writeKey(_ key: String) {
        let bytes = key.utf8
        writeInteger(UInt16(clamping: bytes.count))
        writeBytes(bytes.prefix(Int(UInt16.max)))
    }

    mutating func writeValue(_ value: [UInt8]) {
        writeInteger(UInt32(value.count))
        writeBytes(value)
    }

    mutating func writeRange(_ range: KeyRange) {
        writeKey(range.start)
        if let end = range.end {
            writeInteger(UInt8(1))
            writeKey(end)
        } else {
            writeInteger(UInt8(0))
        }
    }

    mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws(MetadataError) -> T {
        guard let value = readInteger(as: T.self) else { throw .invalidArgument("\(what): frame ends early") }
        return value
    }

    mutating func readKey() throws(MetadataError) -> String {
        let count = Int(try read(UInt16.self, "key length"))
        guard let bytes = readBytes(length: count) else { throw .invalidArgument("key: frame ends early") }
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func readValue() throws(MetadataError) -> [UInt8] {
        let count = Int(try read(UInt32.self, "value length"))
        guard count <= readableBytes, let bytes = readBytes(length: count) else {
            throw .invalidArgument("value of \(count) bytes: frame ends early")
        }
        return bytes
    }

    mutating func readRange() throws(MetadataError) -> KeyRange {
        let start = try readKey()
        switch try read(UInt8.self, "range end flag") {
        case 0: return .key(start)
        case 1: return KeyRange(start: start, end: try readKey())
        case let flag: throw .invalidArgument("range end flag \(flag) is neither 0 nor 1")
        }
    }

    mutating func readTransaction() throws(MetadataError) -> Transaction {
        var transaction = Transaction()
        let checks = Int(try read(UInt16.self, "check count"))
        guard checks <= MetadataLimits.transactionStepsMax else {
            throw .tooLarge("transaction of \(checks) checks (limit \(MetadataLimits.transactionStepsMax))")
        }
        for _ in 0..<checks {
            let key = try readKey()
            transaction.checks.append(.init(key: key, version: Version(try read(Int64.self, "check version"))))
        }
        let operations = Int(try read(UInt16.self, "operation count"))
        guard operations <= MetadataLimits.transactionStepsMax else {
            throw .tooLarge("transaction of \(operations) operations (limit \(MetadataLimits.transactionStepsMax))")
        }
        for _ in 0..<operations {
            let kind = try read(UInt8.self, "operation kind")
            let key = try readKey()
            switch WatchEvent.Kind(rawValue: kind) {
            case .put:
                let value = try readValue()
                let lease = try read(Int64.self, "lease")
                transaction.operations.append(.put(key: key, value: value, lease: lease == 0 ? nil : LeaseID(lease)))
            case .delete:
                transaction.operations.append(.delete(key: key))
            case nil:
                throw .invalidArgument("operation kind \(kind) is neither put (1) nor delete (2)")
            }
        }
        return transaction
    }
}
