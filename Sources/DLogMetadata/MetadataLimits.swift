/// The limits every backend enforces, checked on the client before a request leaves and again by the metadata
/// role on arrival, so a caller sees the same clear error on either backend. They fit inside etcd's defaults
/// (1.5 MiB per request, 128 operations per transaction).
public enum MetadataLimits {
    public static let keyBytesMax = 1024
    public static let valueBytesMax = 1 << 20
    /// Checks plus operations in one transaction.
    public static let transactionStepsMax = 128
    /// Keys and values of one transaction together.
    public static let transactionBytesMax = (1 << 20) + (64 << 10)
    public static let rangeLimitMax = 10_000
    /// A range page stops early (with `more`) once it holds this many bytes of keys and values.
    public static let rangePageBytesMax = 4 << 20
    public static let leaseTTLSecondsMax = 86_400
    /// Keys bound to one lease (enforced by the embedded store). Its expiry deletes them all at one revision,
    /// and one revision must fit in one watch message.
    public static let keysPerLeaseMax = 10_000

    /// Keys are 1...1024 bytes of printable ASCII without spaces: byte order is then the same on every
    /// backend and in every language, and a prefix range end is always another valid key.
    public static func validate(key: String) throws(MetadataError) {
        let bytes = key.utf8
        guard !bytes.isEmpty else { throw .invalidArgument("empty key") }
        guard bytes.count <= keyBytesMax else {
            throw .tooLarge("key of \(bytes.count) bytes (limit \(keyBytesMax)): \(key.prefix(64))...")
        }
        for byte in bytes where byte < 0x21 || byte > 0x7E {
            throw .invalidArgument("key \(key.debugDescription) has byte 0x\(String(byte, radix: 16)); keys are printable ASCII without spaces")
        }
    }

    public static func validate(range: KeyRange, limit: Int) throws(MetadataError) {
        try validate(boundary: range.start)
        if let end = range.end { try validate(boundary: end) }
        guard limit >= 1, limit <= rangeLimitMax else {
            throw .invalidArgument("range limit \(limit) is outside 1...\(rangeLimitMax)")
        }
    }

    /// Range boundaries may go one byte past printable keys (`after(_:)` appends a NUL, prefix ends bump a byte).
    private static func validate(boundary: String) throws(MetadataError) {
        let bytes = boundary.utf8
        guard !bytes.isEmpty else { throw .invalidArgument("empty range boundary") }
        guard bytes.count <= keyBytesMax + 1 else { throw .tooLarge("range boundary of \(bytes.count) bytes") }
        for byte in bytes where byte > 0x7F {
            throw .invalidArgument("range boundary \(boundary.debugDescription) is not ASCII")
        }
    }

    public static func validate(_ transaction: Transaction) throws(MetadataError) {
        let steps = transaction.checks.count + transaction.operations.count
        guard steps > 0 else { throw .invalidArgument("empty transaction") }
        guard steps <= transactionStepsMax else {
            throw .tooLarge("transaction of \(steps) checks and operations (limit \(transactionStepsMax))")
        }
        var bytes = 0
        var written = Set<String>()
        for check in transaction.checks {
            try validate(key: check.key)
            guard check.version.rawValue >= 0 else {
                throw .invalidArgument("negative version \(check.version.rawValue) for \(check.key)")
            }
            bytes += check.key.utf8.count
        }
        for operation in transaction.operations {
            try validate(key: operation.key)
            guard written.insert(operation.key).inserted else {
                throw .invalidArgument("key \(operation.key) is written twice in one transaction")
            }
            bytes += operation.key.utf8.count
            if case .put(let key, let value, _) = operation {
                guard value.count <= valueBytesMax else {
                    throw .tooLarge("value of \(value.count) bytes for \(key) (limit \(valueBytesMax))")
                }
                bytes += value.count
            }
        }
        guard bytes <= transactionBytesMax else {
            throw .tooLarge("transaction of \(bytes) bytes of keys and values (limit \(transactionBytesMax))")
        }
    }

    public static func validate(ttlSeconds: Int) throws(MetadataError) {
        guard ttlSeconds >= 1, ttlSeconds <= leaseTTLSecondsMax else {
            throw .invalidArgument("lease TTL \(ttlSeconds) s is outside 1...\(leaseTTLSecondsMax)")
        }
    }
}
