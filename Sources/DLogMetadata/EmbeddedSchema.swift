/// The embedded store's file: one SQLite database, `metadata.db`, in the metadata role's data directory.
///
/// SQLite runs in WAL mode with `synchronous = FULL`: a commit returns only after the WAL is fsynced, and the
/// store answers a request only after the commit holding it returned, so every acknowledged write survives a
/// SIGKILL or power loss. Requests that arrive together share one commit (group commit).
///
///     kv(key BLOB PRIMARY KEY, value BLOB, create_rev, mod_rev, lease)   current state; lease 0 = none
///     events(rev, seq, kind, key, value)   every change, kept for watches that resume from a revision;
///                                          trimmed to the newest `historyRevisions` revisions
///     leases(id PRIMARY KEY, ttl)          live leases; deadlines are kept in memory only: at a restart
///                                          a lease lives until the last batch's time plus its TTL
///                                          (`LeaseRestart`)
///     meta(name PRIMARY KEY, value)        'format' (1), 'revision' (last committed), 'compacted' (the newest
///                                          revision no longer in `events`), 'clock_ms' (the wall-clock time
///                                          of the last batch)
///
/// The page cache is 64 MiB (SQLite's default is 2 MiB): a cluster's records (100,000 streams make about
/// 100 MB with their history) are then read from memory, not with a system call per page.
///
/// Keys are stored as their UTF-8 bytes, so `ORDER BY key` is byte order, the same as etcd's.
enum EmbeddedSchema {
    static let format: Int64 = 1
    static let fileName = "metadata.db"

    static let statements = """
        PRAGMA journal_mode = WAL;
        PRAGMA synchronous = FULL;
        PRAGMA cache_size = -65536;
        CREATE TABLE IF NOT EXISTS kv(key BLOB PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
                                      mod_rev INTEGER NOT NULL, lease INTEGER NOT NULL) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS kv_by_lease ON kv(lease) WHERE lease != 0;
        CREATE TABLE IF NOT EXISTS events(rev INTEGER NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
                                          key BLOB NOT NULL, value BLOB NOT NULL,
                                          PRIMARY KEY(rev, seq)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """
}

/// The prepared statements of the embedded store, made once when the database opens.
final class EmbeddedStatements {
    let getKV: SQLiteStatement
    let rangeKV: SQLiteStatement
    let putKV: SQLiteStatement
    let deleteKV: SQLiteStatement
    let insertEvent: SQLiteStatement
    let eventsFrom: SQLiteStatement
    let eventsAt: SQLiteStatement
    let newestEvent: SQLiteStatement
    let trimEvents: SQLiteStatement
    let keysOfLease: SQLiteStatement
    let countOfLease: SQLiteStatement
    let insertLease: SQLiteStatement
    let deleteLease: SQLiteStatement
    let allLeases: SQLiteStatement
    let getMeta: SQLiteStatement
    let setMeta: SQLiteStatement
    let begin: SQLiteStatement
    let commit: SQLiteStatement
    let rollback: SQLiteStatement

    init(_ db: SQLiteDatabase) throws {
        getKV = try db.prepare("SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?1")
        rangeKV = try db.prepare("""
            SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3
            """)
        putKV = try db.prepare("""
            INSERT INTO kv(key, value, create_rev, mod_rev, lease) VALUES(?1, ?2, ?3, ?3, ?4)
            ON CONFLICT(key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev, lease = excluded.lease
            """)
        deleteKV = try db.prepare("DELETE FROM kv WHERE key = ?1")
        insertEvent = try db.prepare("INSERT INTO events(rev, seq, kind, key, value) VALUES(?1, ?2, ?3, ?4, ?5)")
        eventsFrom = try db.prepare("""
            SELECT rev, kind, key, value FROM events WHERE rev >= ?1 ORDER BY rev, seq LIMIT ?2
            """)
        newestEvent = try db.prepare("SELECT coalesce(max(rev), 0) FROM events")
        eventsAt = try db.prepare("SELECT rev, kind, key, value FROM events WHERE rev = ?1 ORDER BY seq")
        trimEvents = try db.prepare("DELETE FROM events WHERE rev <= ?1")
        // `lease != 0` repeats the partial index's condition: without it SQLite cannot prove a bound parameter
        // satisfies it, and scans the whole table (per put bound to a lease, which made 10,000 stream opens
        // quadratic).
        countOfLease = try db.prepare("SELECT count(*) FROM kv WHERE lease = ?1 AND lease != 0")
        keysOfLease = try db.prepare("SELECT key FROM kv WHERE lease = ?1 AND lease != 0 ORDER BY key")
        insertLease = try db.prepare("INSERT INTO leases(id, ttl) VALUES(?1, ?2)")
        deleteLease = try db.prepare("DELETE FROM leases WHERE id = ?1")
        allLeases = try db.prepare("SELECT id, ttl FROM leases")
        getMeta = try db.prepare("SELECT value FROM meta WHERE name = ?1")
        setMeta = try db.prepare("INSERT INTO meta(name, value) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value")
        begin = try db.prepare("BEGIN IMMEDIATE")
        commit = try db.prepare("COMMIT")
        rollback = try db.prepare("ROLLBACK")
    }
}
