#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The JSON shapes of etcd v3's gRPC gateway (etcd 3.4, `api/etcdserverpb/rpc.proto`, proto3 JSON mapping with
/// the proto field names), for the few calls `EtcdStore` makes.
///
/// Quirks of that mapping, each checked against a running etcd 3.4.23:
/// - int64 and uint64 fields are JSON strings (`"revision":"7"`); `bytes` fields are base64.
/// - Fields holding their zero value are left out of responses: `succeeded` and `more` when false, `value`
///   when empty, `lease` when 0, an event's `type` when PUT, a lease's `TTL` when 0, `kvs` when empty.
/// - The lease messages spell their fields `ID` and `TTL`, not snake case.
/// - Streaming calls (`/v3/watch`, `/v3/lease/keepalive`) answer newline-separated objects, each either
///   `{"result":{...}}` or `{"error":{"grpc_code":14,"http_code":503,"message":"...","http_status":"..."}}`.
/// - Unary calls that fail answer a non-200 status with `{"error":"...","message":"...","code":5}` (gRPC code).

/// An int64 field: written as a string, read from a string or a number.
struct EtcdInt64: Codable, Hashable, Sendable {
    var value: Int64

    init(_ value: Int64) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int64.self) {
            value = number
            return
        }
        let text = try container.decode(String.self)
        guard let number = Int64(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "int64 field \"\(text)\"")
        }
        value = number
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

/// A bytes field: base64 in JSON.
struct EtcdBytes: Codable, Hashable, Sendable {
    var bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(_ text: String) { self.bytes = Array(text.utf8) }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "bytes field is not base64")
        }
        bytes = Array(data)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(bytes).base64EncodedString())
    }
}

// MARK: Requests

struct EtcdRangeRequest: Encodable {
    var key: EtcdBytes
    var rangeEnd: EtcdBytes?
    var limit: EtcdInt64?
    /// Only keys and their metadata: what a failed transaction reads back to name the failing check.
    var keysOnly: Bool?

    enum CodingKeys: String, CodingKey {
        case key, limit
        case rangeEnd = "range_end"
        case keysOnly = "keys_only"
    }
}

struct EtcdPutRequest: Encodable {
    var key: EtcdBytes
    var value: EtcdBytes
    var lease: EtcdInt64?
}

struct EtcdDeleteRangeRequest: Encodable {
    var key: EtcdBytes
}

/// One compare of a transaction. `EtcdStore` only compares a key's `mod_revision` for equality; a missing key
/// has mod_revision 0, so "must be absent" is the same compare with 0.
struct EtcdCompare: Encodable {
    var key: EtcdBytes
    var target = "MOD"
    var result = "EQUAL"
    var modRevision: EtcdInt64

    enum CodingKeys: String, CodingKey {
        case key, target, result
        case modRevision = "mod_revision"
    }
}

/// One operation of a transaction: exactly one of the fields is set (a proto `oneof`).
struct EtcdRequestOp: Encodable {
    var requestRange: EtcdRangeRequest?
    var requestPut: EtcdPutRequest?
    var requestDeleteRange: EtcdDeleteRangeRequest?

    enum CodingKeys: String, CodingKey {
        case requestRange = "request_range"
        case requestPut = "request_put"
        case requestDeleteRange = "request_delete_range"
    }
}

struct EtcdTxnRequest: Encodable {
    var compare: [EtcdCompare]
    var success: [EtcdRequestOp]
    var failure: [EtcdRequestOp]
}

struct EtcdWatchCreateRequest: Encodable {
    var key: EtcdBytes
    var rangeEnd: EtcdBytes?
    var startRevision: EtcdInt64?
    /// Lets etcd split a response larger than its request limit into several messages (all but the last
    /// marked `fragment`), so one message stays small enough to buffer whatever the history holds.
    var fragment = true

    enum CodingKeys: String, CodingKey {
        case key, fragment
        case rangeEnd = "range_end"
        case startRevision = "start_revision"
    }
}

struct EtcdWatchRequest: Encodable {
    var createRequest: EtcdWatchCreateRequest

    enum CodingKeys: String, CodingKey {
        case createRequest = "create_request"
    }
}

struct EtcdLeaseGrantRequest: Encodable {
    var ttl: EtcdInt64

    enum CodingKeys: String, CodingKey {
        case ttl = "TTL"
    }
}

/// The body of both `/v3/lease/revoke` and `/v3/lease/keepalive`.
struct EtcdLeaseIDRequest: Encodable {
    var id: EtcdInt64

    enum CodingKeys: String, CodingKey {
        case id = "ID"
    }
}

// MARK: Responses

struct EtcdResponseHeader: Decodable {
    var revision: EtcdInt64?
}

struct EtcdKeyValue: Decodable {
    var key: EtcdBytes
    var value: EtcdBytes?
    var createRevision: EtcdInt64?
    var modRevision: EtcdInt64?
    var lease: EtcdInt64?

    enum CodingKeys: String, CodingKey {
        case key, value, lease
        case createRevision = "create_revision"
        case modRevision = "mod_revision"
    }
}

struct EtcdRangeResponse: Decodable {
    var header: EtcdResponseHeader?
    var kvs: [EtcdKeyValue]?
    var more: Bool?
}

struct EtcdResponseOp: Decodable {
    var responseRange: EtcdRangeResponse?

    enum CodingKeys: String, CodingKey {
        case responseRange = "response_range"
    }
}

struct EtcdTxnResponse: Decodable {
    var header: EtcdResponseHeader?
    var succeeded: Bool?
    var responses: [EtcdResponseOp]?
}

struct EtcdEvent: Decodable {
    /// "DELETE", or absent for a put (PUT is the enum's zero value, so the gateway leaves it out).
    var type: String?
    var kv: EtcdKeyValue
}

struct EtcdWatchResponse: Decodable {
    var header: EtcdResponseHeader?
    var created: Bool?
    var canceled: Bool?
    var compactRevision: EtcdInt64?
    var cancelReason: String?
    /// More messages of the same response follow.
    var fragment: Bool?
    var events: [EtcdEvent]?

    enum CodingKeys: String, CodingKey {
        case header, created, canceled, fragment, events
        case compactRevision = "compact_revision"
        case cancelReason = "cancel_reason"
    }
}

struct EtcdLeaseGrantResponse: Decodable {
    var id: EtcdInt64?
    var ttl: EtcdInt64?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case error
        case id = "ID"
        case ttl = "TTL"
    }
}

struct EtcdLeaseKeepAliveResponse: Decodable {
    var id: EtcdInt64?
    /// Left out (zero) when the lease is gone.
    var ttl: EtcdInt64?

    enum CodingKeys: String, CodingKey {
        case id = "ID"
        case ttl = "TTL"
    }
}

/// One message of a streaming call.
struct EtcdStreamMessage<Result: Decodable>: Decodable {
    var result: Result?
    var error: EtcdStreamError?
}

struct EtcdStreamError: Decodable {
    var grpcCode: Int?
    var message: String?

    enum CodingKeys: String, CodingKey {
        case message
        case grpcCode = "grpc_code"
    }
}

/// The body of a failed unary call.
struct EtcdErrorBody: Decodable {
    var error: String?
    var message: String?
    var code: Int?
}

/// gRPC status codes that mean "try again, perhaps elsewhere" rather than "this request is wrong".
enum EtcdGRPCCode {
    static let canceled = 1
    static let deadlineExceeded = 4
    static let unavailable = 14

    static func isTransient(_ code: Int) -> Bool {
        code == canceled || code == deadlineExceeded || code == unavailable
    }
}
