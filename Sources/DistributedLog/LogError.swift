import DLogLedger
import DLogWire

/// What the log layer reports, each naming the log (and the record or position) involved.
public enum LogError: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidName(String, String)
    case noSuchLog(String)
    case logExists(String)
    /// Another writer holds the log (named by its owner id).
    case ownedByOther(String, owner: String)
    /// This writer lost the log: its lease ended or another writer fenced its segment.
    case ownershipLost(String, String)
    /// A txid below the log's last one, or negative.
    case txidOutOfOrder(String, txid: Int64, last: Int64)
    case recordTooLarge(String, bytes: Int)
    /// The log was sealed with `markEndOfStream`.
    case endOfStream(String)
    case writerClosed(String)
    /// A position before the log's first record that is still kept, or in truncated data.
    case truncated(String, DLSN)
    case damaged(String, String)
    case busy(String, String)
    case ledger(String, LedgerError)

    public var description: String {
        switch self {
        case .invalidName(let name, let why): return "invalid log name '\(name)': \(why)"
        case .noSuchLog(let name): return "log '\(name)' does not exist"
        case .logExists(let name): return "log '\(name)' already exists"
        case .ownedByOther(let name, let owner):
            return "log '\(name)' is owned by writer \(owner); only one writer at a time (it is released when that writer closes or its lease expires)"
        case .ownershipLost(let name, let why):
            return "ownership lost: this writer no longer owns log '\(name)' (\(why)); its pending and later writes fail"
        case .txidOutOfOrder(let name, let txid, let last):
            return txid < 0 ? "log '\(name)': txid \(txid) is negative"
                : "log '\(name)': txid \(txid) is below the last txid written, \(last) (txids never decrease)"
        case .recordTooLarge(let name, let bytes):
            return "log '\(name)': a record of \(bytes) bytes is over the limit of \(LogRecord.payloadBytesMax)"
        case .endOfStream(let name): return "log '\(name)' is sealed (end of stream was marked)"
        case .writerClosed(let name): return "the writer of log '\(name)' is closed"
        case .truncated(let name, let dlsn): return "log '\(name)': \(dlsn) lies in truncated data"
        case .damaged(let name, let why): return "log '\(name)': \(why)"
        case .busy(let name, let why): return "log '\(name)': \(why)"
        case .ledger(let name, let error): return "log '\(name)': \(error)"
        }
    }
}
