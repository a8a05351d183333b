import DLogWire

/// Who may do what on a bookie whose port requires TLS (docs/security.md, "Authorization"):
///
/// | operations | principals |
/// |---|---|
/// | `GET_INFO` | any |
/// | `DELETE_LEDGER`, `LEDGER_KEY` | `bookie`, `admin` |
/// | `ADD`, `ADD_BATCH`, `READ` (and fencing), `READ_LAC`, `WRITE_LAC`, `READ_RANGE`, `LIST_ENTRIES` | `bookie` (recovery, re-replication), `proxy`, `admin`, and the applications named in `ledger_clients` |
public struct BookieAccess: Sendable, Hashable {
    /// Application principals (by name) that may use ledgers directly, as the core library does.
    public var ledgerClients: Set<String>

    public init(ledgerClients: Set<String> = []) {
        self.ledgerClients = ledgerClients
    }

    /// Whether `principal` may do `op`; a connection without a principal may do nothing.
    public func allows(_ op: BookieOp, by principal: Principal?) -> Bool {
        guard let principal else { return false }
        switch op {
        case .getInfo:
            return true
        case .deleteLedger, .ledgerKey:
            return principal.role == .bookie || principal.role == .admin
        case .add, .addBatch, .read, .readLAC, .writeLAC, .readRange, .listEntries:
            switch principal.role {
            case .bookie, .proxy, .admin: return true
            case .client: return ledgerClients.contains(principal.name)
            case .metadata, .monitor: return false
            }
        }
    }

    /// The refusal's message: who, and what.
    static func refusal(_ op: BookieOp, by principal: Principal?) -> String {
        guard let principal else { return "a connection without a principal may not \(op.name)" }
        return "\(principal) may not \(op.name)"
    }
}

extension BookieOp {
    /// The operation's name in docs/protocol.md.
    public var name: String {
        switch self {
        case .add: return "ADD"
        case .read: return "READ"
        case .readLAC: return "READ_LAC"
        case .writeLAC: return "WRITE_LAC"
        case .deleteLedger: return "DELETE_LEDGER"
        case .getInfo: return "GET_INFO"
        case .listEntries: return "LIST_ENTRIES"
        case .ledgerKey: return "LEDGER_KEY"
        case .readRange: return "READ_RANGE"
        case .addBatch: return "ADD_BATCH"
        }
    }
}
