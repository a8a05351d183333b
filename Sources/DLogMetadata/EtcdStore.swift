#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import DLogWire
import NIOCore
import NIOPosix
import Synchronization

/// The metadata contract on etcd v3, spoken as JSON through etcd's gRPC gateway over HTTP/1.1.
///
/// Every key lives under `prefix` in etcd ("/dlog/a" + "/ledgers/1" is etcd key "/dlog/a/ledgers/1"); the prefix
/// is added on the way in and stripped on the way out. A version is etcd's `mod_revision`, a revision etcd's
/// header revision, so both backends number changes the same way.
///
/// - A transaction is one etcd txn: each check compares `mod_revision` for equality (0 for "absent", which
///   etcd reports for a missing key), success puts and deletes, failure reads back every checked key so the
///   first failing check can be named with the version found.
/// - A watch is one `/v3/watch` stream on its own connection, cut into whole revisions.
/// - Requests that cannot reach etcd, time out, or meet etcd without a leader throw `unavailable`.
public final class EtcdStore: MetadataStore {
    public struct Configuration: Sendable {
        /// How long any one request may wait for its answer; for a watch, for its first message.
        public var requestTimeout: Duration = .seconds(10)
        public var connectTimeout: Duration = .seconds(3)
        /// Whole revisions a watch holds for a consumer that has not taken them; past that the watch ends
        /// with `unavailable` and `MetadataWatch` resumes from where the consumer is.
        public var watchBufferRevisionsMax = 1024
        /// The largest answer, or watch message, kept in memory. A range answer over it is asked again for
        /// fewer keys.
        public var responseBytesMax = 16 << 20
        public var idleConnectionsMax = 4
        public var connectionsMax = 256
        /// HTTPS to etcd with this identity (its CA must have signed etcd's certificate; etcd with
        /// --client-cert-auth checks ours); nil: plain HTTP.
        public var tls: TLSIdentity?
        public init() {}
    }

    public let prefix: String
    let http: EtcdHTTPClient
    private let configuration: Configuration

    /// A store over the etcd members at `endpoints` (tried in order), keeping its keys under `prefix`.
    /// `prefix` is printable ASCII without spaces, or empty for none.
    public init(endpoints: [(host: String, port: Int)], prefix: String,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                configuration: Configuration = Configuration()) throws(MetadataError) {
        guard !endpoints.isEmpty else { throw .invalidArgument("an etcd store needs at least one endpoint") }
        // One key with the largest value, base64-encoded, must fit in an answer, or a range could never progress.
        guard configuration.responseBytesMax >= 2 << 20 else {
            throw .invalidArgument("responseBytesMax \(configuration.responseBytesMax) is below 2 MiB, the answer one 1 MiB value needs")
        }
        guard configuration.watchBufferRevisionsMax >= 1, configuration.idleConnectionsMax >= 0,
              configuration.connectionsMax >= 1, configuration.requestTimeout > .zero,
              configuration.connectTimeout > .zero else {
            throw .invalidArgument("etcd store configuration has a zero or negative limit: \(configuration)")
        }
        if !prefix.isEmpty {
            do {
                try MetadataLimits.validate(key: prefix)
            } catch {
                throw .invalidArgument("etcd key prefix: \(error)")
            }
        }
        self.prefix = prefix
        self.configuration = configuration
        self.http = EtcdHTTPClient(
            endpoints: endpoints.map { EtcdEndpoint(host: $0.host, port: $0.port) }, group: eventLoopGroup,
            configuration: .init(requestTimeout: configuration.requestTimeout,
                                 connectTimeout: configuration.connectTimeout,
                                 responseBytesMax: configuration.responseBytesMax,
                                 idleConnectionsMax: configuration.idleConnectionsMax,
                                 connectionsMax: configuration.connectionsMax, tls: configuration.tls))
    }

    // MARK: Keys

    public func range(_ range: KeyRange, limit: Int) async throws -> RangePage {
        try MetadataLimits.validate(range: range, limit: limit)
        var request = EtcdRangeRequest(key: etcdKey(range.start), rangeEnd: range.end.map(etcdKey),
                                       limit: EtcdInt64(Int64(limit)))
        while true {
            do {
                let response = try await call("/v3/kv/range", request, answer: EtcdRangeResponse.self)
                return try page(response)
            } catch MetadataError.tooLarge(let why) {
                // Big values: ask again for fewer keys (etcd has no byte limit on a range). One key always fits,
                // since a value is at most 1 MiB and an answer may hold responseBytesMax.
                let asked = request.limit!.value
                guard asked > 1 else { throw MetadataError.tooLarge(why) }
                request.limit = EtcdInt64(Swift.max(1, asked / 4))
            }
        }
    }

    /// A page of at most ~`rangePageBytesMax` bytes: past that it ends early, with `more`.
    private func page(_ response: EtcdRangeResponse) throws(MetadataError) -> RangePage {
        let revision = try self.revision(response.header, of: "range")
        var items: [KeyValue] = []
        var bytes = 0
        var more = response.more ?? false
        for kv in response.kvs ?? [] {
            if bytes >= MetadataLimits.rangePageBytesMax {
                more = true
                break
            }
            let item = try keyValue(kv)
            guard items.last.map({ $0.key.utf8.lexicographicallyPrecedes(item.key.utf8) }) ?? true else {
                throw .internalError("etcd returned range keys out of order at \(item.key)")
            }
            bytes += item.key.utf8.count + item.value.count
            items.append(item)
        }
        return RangePage(items: items, more: more, revision: revision)
    }

    public func commit(_ transaction: Transaction) async throws -> Revision {
        try MetadataLimits.validate(transaction)
        let request = EtcdTxnRequest(
            compare: transaction.checks.map {
                EtcdCompare(key: etcdKey($0.key), modRevision: EtcdInt64($0.version.rawValue))
            },
            success: transaction.operations.map(operation),
            // Read back every checked key, in order, to name the first check that failed and what it found.
            failure: transaction.checks.map {
                EtcdRequestOp(requestRange: EtcdRangeRequest(key: etcdKey($0.key), keysOnly: true))
            })
        // etcd does not say which lease it did not find; a transaction names at most a few, report the first.
        let lease = transaction.operations.lazy.compactMap { operation -> LeaseID? in
            if case .put(_, _, let lease) = operation { return lease }
            return nil
        }.first
        let response = try await call("/v3/kv/txn", request, answer: EtcdTxnResponse.self, lease: lease)
        let revision = try self.revision(response.header, of: "txn")
        if response.succeeded == true { return revision }
        throw failedCheck(transaction.checks, reads: response.responses ?? [], at: revision)
    }

    private func operation(_ operation: Transaction.Operation) -> EtcdRequestOp {
        switch operation {
        case .put(let key, let value, let lease):
            let put = EtcdPutRequest(key: etcdKey(key), value: EtcdBytes(value), lease: lease.map { EtcdInt64($0.rawValue) })
            return EtcdRequestOp(requestPut: put)
        case .delete(let key):
            return EtcdRequestOp(requestDeleteRange: EtcdDeleteRangeRequest(key: etcdKey(key)))
        }
    }

    private func failedCheck(_ checks: [Transaction.Check], reads: [EtcdResponseOp],
                             at revision: Revision) -> MetadataError {
        guard reads.count == checks.count else {
            return .internalError("etcd answered a failed txn with \(reads.count) reads for \(checks.count) checks")
        }
        for (check, read) in zip(checks, reads) {
            let actual = Version(read.responseRange?.kvs?.first?.modRevision?.value ?? 0)
            if actual != check.version {
                return .failedCheck(key: check.key, expected: check.version, actual: actual)
            }
        }
        return .internalError("etcd rejected a txn whose checks all hold at revision \(revision)")
    }

    // MARK: Leases

    public func grantLease(ttlSeconds: Int) async throws -> Lease {
        try MetadataLimits.validate(ttlSeconds: ttlSeconds)
        let response = try await call("/v3/lease/grant", EtcdLeaseGrantRequest(ttl: EtcdInt64(Int64(ttlSeconds))),
                                      answer: EtcdLeaseGrantResponse.self)
        if let error = response.error, !error.isEmpty {
            throw Self.error(message: error, code: nil, status: 200, endpoint: nil, lease: nil)
        }
        guard let id = response.id?.value, id != 0, let ttl = response.ttl?.value, ttl > 0 else {
            throw MetadataError.internalError("etcd granted a lease without an ID or TTL")
        }
        // etcd raises a TTL below its minimum (about 2 s for a single member): report what it granted.
        return Lease(id: LeaseID(id), ttlSeconds: Int(ttl))
    }

    public func keepAlive(_ lease: LeaseID) async throws -> Int {
        // A streaming call in gRPC; through the gateway one request body gets one message back, then the end.
        let message = try await call("/v3/lease/keepalive", EtcdLeaseIDRequest(id: EtcdInt64(lease.rawValue)),
                                     answer: EtcdStreamMessage<EtcdLeaseKeepAliveResponse>.self, lease: lease)
        if let error = message.error {
            throw Self.error(message: error.message ?? "unknown error", code: error.grpcCode, status: 200,
                             endpoint: nil, lease: lease)
        }
        // etcd answers an unknown or expired lease with TTL 0, which the gateway leaves out.
        guard let ttl = message.result?.ttl?.value, ttl > 0 else { throw MetadataError.leaseExpired(lease) }
        return Int(ttl)
    }

    public func revoke(_ lease: LeaseID) async throws {
        _ = try await call("/v3/lease/revoke", EtcdLeaseIDRequest(id: EtcdInt64(lease.rawValue)),
                           answer: EtcdEmptyResponse.self, lease: lease)
    }

    public func shutdown() async {
        await http.shutdown()
    }

    // MARK: Watches

    public func subscribe(_ range: KeyRange, from revision: Revision) -> AsyncThrowingStream<[WatchEvent], any Error> {
        let (stream, continuation) = AsyncThrowingStream<[WatchEvent], any Error>.makeStream(
            bufferingPolicy: .bufferingOldest(configuration.watchBufferRevisionsMax))
        do {
            try MetadataLimits.validate(range: range, limit: 1)
        } catch {
            continuation.finish(throwing: error)
            return stream
        }
        let request = EtcdWatchRequest(createRequest: EtcdWatchCreateRequest(
            key: etcdKey(range.start), rangeEnd: range.end.map(etcdKey),
            startRevision: revision == .zero ? nil : EtcdInt64(revision.rawValue)))
        let sink = EtcdWatchSink(continuation: continuation,
                                 decoder: EtcdWatchDecoder(prefix: Array(prefix.utf8), requested: revision))
        let session = EtcdWatchSession()
        continuation.onTermination = { _ in session.cancel() }
        let http = self.http
        Task {
            do {
                let body = try Self.encode(request)
                session.attach(try await http.openStream("/v3/watch", body: body, sink: sink))
            } catch {
                continuation.finish(throwing: error)
            }
        }
        return stream
    }

    // MARK: Requests

    /// POSTs `request` to `path` and decodes the answer, mapping etcd's errors onto `MetadataError`.
    /// `lease` names the lease a "lease not found" answer is about.
    private func call<Request: Encodable, Answer: Decodable>(
        _ path: String, _ request: Request, answer: Answer.Type, lease: LeaseID? = nil
    ) async throws -> Answer {
        let response = try await http.post(path, body: try Self.encode(request))
        guard response.status == .ok else {
            let error = Self.error(from: response, lease: lease)
            // A member without a leader, or too busy, answers 503: let the next request try another member.
            if error.isRetryable { http.markFailed(response.endpoint) }
            throw error
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(response.body.readableBytesView))
        } catch {
            throw MetadataError.internalError("etcd \(response.endpoint) answered \(path) with JSON we cannot read: \(error)")
        }
    }

    static func encode<Request: Encodable>(_ request: Request) throws -> ByteBuffer {
        do {
            return ByteBuffer(bytes: try JSONEncoder().encode(request))
        } catch {
            throw MetadataError.internalError("cannot encode an etcd request: \(error)")
        }
    }

    /// The error an etcd answer with a non-200 status stands for.
    static func error(from response: EtcdHTTPResponse, lease: LeaseID?) -> MetadataError {
        let body = try? JSONDecoder().decode(EtcdErrorBody.self, from: Data(response.body.readableBytesView))
        let message = body?.message ?? body?.error
            ?? String(decoding: response.body.readableBytesView.prefix(200), as: UTF8.self)
        return error(message: message, code: body?.code, status: Int(response.status.code),
                     endpoint: response.endpoint, lease: lease)
    }

    /// Maps etcd's error text and gRPC code; the texts are etcd's own (`etcdserver/api/v3rpc/rpctypes`).
    static func error(message: String, code: Int?, status: Int, endpoint: EtcdEndpoint?,
                      lease: LeaseID?) -> MetadataError {
        let source = endpoint.map { "etcd \($0)" } ?? "etcd"
        if message.contains("requested lease not found"), let lease { return .leaseExpired(lease) }
        if message.contains("request is too large") || message.contains("too many operations in txn request") {
            return .tooLarge("\(source): \(message)")
        }
        if status == 503 || status == 504 || code.map(EtcdGRPCCode.isTransient) == true {
            return .unavailable("\(source): \(message)")
        }
        return .internalError(status == 200 ? "\(source): \(message)" : "\(source) answered HTTP \(status): \(message)")
    }

    // MARK: Conversions

    func etcdKey(_ key: String) -> EtcdBytes {
        EtcdBytes(Array(prefix.utf8) + Array(key.utf8))
    }

    private func keyValue(_ kv: EtcdKeyValue) throws(MetadataError) -> KeyValue {
        let key = try Self.userKey(kv.key.bytes, prefix: Array(prefix.utf8))
        let lease = kv.lease?.value ?? 0
        return KeyValue(key: key, value: kv.value?.bytes ?? [], version: Version(kv.modRevision?.value ?? 0),
                        createRevision: Revision(kv.createRevision?.value ?? 0),
                        lease: lease == 0 ? nil : LeaseID(lease))
    }

    /// The key without the store's prefix; a key outside the prefix means etcd answered another request.
    static func userKey(_ bytes: [UInt8], prefix: [UInt8]) throws(MetadataError) -> String {
        guard bytes.count > prefix.count, bytes.starts(with: prefix) else {
            throw .internalError("etcd returned key \(String(decoding: bytes, as: UTF8.self).debugDescription) outside prefix \(String(decoding: prefix, as: UTF8.self).debugDescription)")
        }
        return String(decoding: bytes[prefix.count...], as: UTF8.self)
    }

    private func revision(_ header: EtcdResponseHeader?, of call: String) throws(MetadataError) -> Revision {
        guard let revision = header?.revision?.value else {
            throw .internalError("etcd answered a \(call) without a header revision")
        }
        return Revision(revision)
    }
}

/// An answer whose content does not matter (a revoke's header).
struct EtcdEmptyResponse: Decodable {}

// MARK: Watch decoding

/// Cuts etcd's watch messages into whole revisions. Pure: fed one decoded message at a time, it says what to
/// deliver and whether the watch is over.
///
/// etcd sends every event of one revision in one response, but one response may hold many revisions (a watch
/// catching up on history gets up to 1000 at once), and with `fragment` a response larger than etcd's request
/// limit comes as several messages, all but the last marked `fragment`. So a revision is complete once an event
/// of a later revision follows it, or its response ends.
struct EtcdWatchDecoder {
    let prefix: [UInt8]
    let requested: Revision
    /// Events of the newest revision seen, not yet known to be complete.
    private var pending: [WatchEvent] = []
    private var newest: Revision

    init(prefix: [UInt8], requested: Revision) {
        self.prefix = prefix
        self.requested = requested
        self.newest = Revision(requested.rawValue - 1)
    }

    /// The revisions `message` completes, in order, and the error that ends the watch, if it does.
    mutating func feed(_ message: EtcdStreamMessage<EtcdWatchResponse>,
                       from endpoint: EtcdEndpoint) -> (batches: [[WatchEvent]], end: MetadataError?) {
        if let error = message.error {
            return ([], EtcdStore.error(message: error.message ?? "watch failed", code: error.grpcCode,
                                        status: 200, endpoint: endpoint, lease: nil))
        }
        guard let response = message.result else {
            return ([], .internalError("etcd \(endpoint) sent a watch message with neither result nor error"))
        }
        if response.canceled == true {
            if let oldest = response.compactRevision?.value, oldest > 0 {
                return ([], .compacted(requested: requested, oldest: Revision(oldest)))
            }
            return ([], .internalError("etcd \(endpoint) canceled the watch: \(response.cancelReason ?? "no reason given")"))
        }
        var batches: [[WatchEvent]] = []
        for event in response.events ?? [] {
            let converted: WatchEvent
            do {
                converted = try convert(event)
            } catch {
                return (batches, error)
            }
            guard converted.revision >= newest, converted.revision >= requested else {
                return (batches, .internalError("etcd \(endpoint) sent revision \(converted.revision) after \(newest)"))
            }
            if converted.revision > newest, !pending.isEmpty {
                batches.append(pending)
                pending = []
            }
            newest = converted.revision
            pending.append(converted)
        }
        if response.fragment != true, !pending.isEmpty {
            batches.append(pending)
            pending = []
        }
        assert(batches.allSatisfy { batch in batch.allSatisfy { $0.revision == batch[0].revision } },
               "a batch holds exactly one revision")
        return (batches, nil)
    }

    private func convert(_ event: EtcdEvent) throws(MetadataError) -> WatchEvent {
        let key = try EtcdStore.userKey(event.kv.key.bytes, prefix: prefix)
        guard let revision = event.kv.modRevision?.value, revision > 0 else {
            throw .internalError("etcd sent a watch event on \(key) without a revision")
        }
        switch event.type {
        case nil, "PUT":
            return WatchEvent(kind: .put, key: key, value: event.kv.value?.bytes ?? [], revision: Revision(revision))
        case "DELETE":
            return WatchEvent(kind: .delete, key: key, value: [], revision: Revision(revision))
        case let other?:
            throw .internalError("etcd sent a watch event of unknown type \(other) on \(key)")
        }
    }
}

/// Feeds one watch's messages through its decoder into the consumer's bounded stream.
final class EtcdWatchSink: EtcdStreamSink {
    private let continuation: AsyncThrowingStream<[WatchEvent], any Error>.Continuation
    private let decoder: Mutex<EtcdWatchDecoder>

    init(continuation: AsyncThrowingStream<[WatchEvent], any Error>.Continuation, decoder: EtcdWatchDecoder) {
        self.continuation = continuation
        self.decoder = Mutex(decoder)
    }

    func receive(line: ByteBuffer, from endpoint: EtcdEndpoint) -> Bool {
        let message: EtcdStreamMessage<EtcdWatchResponse>
        do {
            message = try JSONDecoder().decode(EtcdStreamMessage<EtcdWatchResponse>.self,
                                               from: Data(line.readableBytesView))
        } catch {
            continuation.finish(throwing: MetadataError.internalError("etcd \(endpoint) sent a watch message we cannot read: \(error)"))
            return false
        }
        let (batches, end) = decoder.withLock { $0.feed(message, from: endpoint) }
        for batch in batches {
            switch continuation.yield(batch) {
            case .enqueued:
                continue
            case .dropped:
                // Not buffering more: the consumer resumes from the revision after the last one it took.
                continuation.finish(throwing: MetadataError.unavailable("watch consumer fell behind"))
                return false
            case .terminated:
                return false
            @unknown default:
                return false
            }
        }
        if let end {
            continuation.finish(throwing: end)
            return false
        }
        return true
    }

    func finish(_ end: EtcdStreamEnd) {
        switch end {
        case .lost(let error):
            continuation.finish(throwing: error)
        case .rejected(let response):
            continuation.finish(throwing: EtcdStore.error(from: response, lease: nil))
        }
    }
}

/// Links a watch's consumer to its connection, which opens after the consumer may already have gone.
final class EtcdWatchSession: Sendable {
    private struct State {
        var channel: (any Channel)?
        var cancelled = false
    }

    private let state = Mutex(State())

    func attach(_ channel: any Channel) {
        let cancelled = state.withLock { state in
            if !state.cancelled { state.channel = channel }
            return state.cancelled
        }
        if cancelled { channel.close(promise: nil) }
    }

    func cancel() {
        let channel = state.withLock { state in
            state.cancelled = true
            defer { state.channel = nil }
            return state.channel
        }
        channel?.close(promise: nil)
    }
}
