@testable import DLogMetadata
import DLogTestSupport
import Testing

@Suite struct EmbeddedQueryPlanTests {
    /// Every prepared statement of the embedded store that reads or changes `kv` or `events` finds its rows by an
    /// index: none scans a whole table. The lease count and key list once scanned every key (the partial index on
    /// `lease` could not be used with a bound parameter), at every put bound to a lease, which made opening
    /// 10,000 streams quadratic: 95 % of the store's time went there.
    @Test func noStatementScansAWholeTable() throws {
        let dir = TempDir()
        let db = try SQLiteDatabase(path: dir.sub(EmbeddedSchema.fileName))
        try db.execute(EmbeddedSchema.statements)
        let statements = try EmbeddedStatements(db)
        let all = Mirror(reflecting: statements).children.compactMap { ($0.label ?? "?", $0.value as? SQLiteStatement) }
        #expect(all.count >= 19, "every statement is seen")
        var checked = 0
        for (name, statement) in all {
            guard let statement, statement.sql.contains(" kv") || statement.sql.contains(" events") else { continue }
            var plan: [String] = []
            try db.prepare("EXPLAIN QUERY PLAN " + statement.sql).run([]) { row in
                plan.append(String(decoding: row.blob(3), as: UTF8.self))
            }
            #expect(!plan.contains { $0.hasPrefix("SCAN kv") || $0.hasPrefix("SCAN events") }, "\(name): \(plan)")
            checked += 1
        }
        #expect(checked >= 11, "the statements on kv and events were checked")
    }
}
