import DLogWire

/// What an application writes: a transaction id it chooses (non-negative, never decreasing within a log) and
/// the payload bytes.
public struct LogRecord: Hashable, Sendable {
    public var txid: Int64
    public var payload: [UInt8]

    public init(txid: Int64, payload: [UInt8]) {
        self.txid = txid
        self.payload = payload
    }

    /// The largest payload a record may carry: an entry must fit a bookie's frame with room for its batch.
    public static let payloadBytesMax = (1 << 20) - 8192
}

/// A record as a reader gets it: where it is in the log, its sequence id (its index among all records of the
/// log, counted from the first record ever written, so the difference of two tells how many lie between), its
/// txid and payload.
public struct LogRecordWithDLSN: Hashable, Sendable {
    public var dlsn: DLSN
    public var sequenceID: Int64
    public var txid: Int64
    public var payload: [UInt8]

    public init(dlsn: DLSN, sequenceID: Int64, txid: Int64, payload: [UInt8]) {
        self.dlsn = dlsn
        self.sequenceID = sequenceID
        self.txid = txid
        self.payload = payload
    }
}
