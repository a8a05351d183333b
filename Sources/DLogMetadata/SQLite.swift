import CSQLite

/// A thin owner of one SQLite connection and its prepared statements. Used from one thread only (the
/// embedded store's), so it is not Sendable.
final class SQLiteDatabase {
    struct Failure: Error, CustomStringConvertible {
        var code: Int32
        var message: String
        var description: String { "sqlite error \(code): \(message)" }
    }

    private var handle: OpaquePointer?
    let path: String

    init(path: String) throws(Failure) {
        self.path = path
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            throw Failure(code: rc, message: "\(path): \(message)")
        }
    }

    deinit { sqlite3_close_v2(handle) }

    func execute(_ sql: String) throws(Failure) {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        guard rc == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? "unknown"
            sqlite3_free(error)
            throw Failure(code: rc, message: "\(message) (in: \(sql.prefix(80)))")
        }
    }

    /// False when no transaction is open (SQLite is in autocommit mode).
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    func prepare(_ sql: String) throws(Failure) -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw failure(rc, sql) }
        return SQLiteStatement(database: self, statement: statement, sql: sql)
    }

    func failure(_ rc: Int32, _ context: String) -> Failure {
        Failure(code: rc, message: "\(String(cString: sqlite3_errmsg(handle))) (in: \(context.prefix(80)))")
    }
}

/// A prepared statement, reset before each use. Columns and parameters are 0- and 1-based as in SQLite.
final class SQLiteStatement {
    private unowned let database: SQLiteDatabase
    private let statement: OpaquePointer
    let sql: String

    init(database: SQLiteDatabase, statement: OpaquePointer, sql: String) {
        self.database = database
        self.statement = statement
        self.sql = sql
    }

    deinit { sqlite3_finalize(statement) }

    enum Value {
        case integer(Int64)
        case blob([UInt8])
        case text(String)
        case null
    }

    /// Binds `values` and steps through every row, handing each to `row`. Returns the number of rows.
    @discardableResult
    func run(_ values: [Value], row: (SQLiteStatement) throws -> Void = { _ in }) throws -> Int {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        for (index, value) in values.enumerated() {
            let position = Int32(index + 1)
            let rc: Int32
            switch value {
            case .integer(let v): rc = sqlite3_bind_int64(statement, position, v)
            case .null: rc = sqlite3_bind_null(statement, position)
            case .text(let text):
                rc = sqlite3_bind_text(statement, position, text, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            case .blob(let bytes):
                // SQLITE_TRANSIENT: SQLite copies the bytes, so the array may go away after binding.
                rc = bytes.withUnsafeBytes { raw in
                    sqlite3_bind_blob(statement, position, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
                                      Int32(raw.count), unsafeBitCast(-1, to: sqlite3_destructor_type.self))
                }
            }
            guard rc == SQLITE_OK else { throw database.failure(rc, sql) }
        }
        var rows = 0
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                sqlite3_reset(statement)
                throw database.failure(rc, sql)
            }
            rows += 1
            try row(self)
        }
        sqlite3_reset(statement)
        return rows
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }
}
