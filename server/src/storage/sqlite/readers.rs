//! Read-only connections beside the writer's. In WAL mode SQLite lets a
//! reader run while a write transaction commits, so a lookup (a login's
//! device, account and suspensions; a fetch of queued envelopes) no longer
//! waits behind the shared connection's lock for the writer's batch and
//! its fsync. Each statement outside a transaction reads the latest commit,
//! and every write is committed before its caller hears of it, so a read
//! after a write sees it.
//!
//! Not owned here: the writes (group_commit.rs, sqlite.rs).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

/// How many read connections an open database gets.
pub(super) const READERS: usize = 4;

/// A fixed set of read-only connections to one database file.
pub(super) struct Readers {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// Opens `count` read-only connections to the database at `path`,
    /// which the writer has already created and migrated. An in-memory
    /// database is private to its one connection: it gets none, and its
    /// reads use the writer's connection.
    ///
    /// # Errors
    /// The first connection that cannot be opened or configured.
    pub(super) fn open(
        path: &Path,
        count: usize,
        statement_cache: usize,
    ) -> rusqlite::Result<Self> {
        let in_memory = path
            .to_str()
            .is_some_and(|p| p.is_empty() || p == ":memory:" || p.starts_with("file::memory:"));
        let count = if in_memory { 0 } else { count };
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "query_only", "ON")?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.set_prepared_statement_cache_capacity(statement_cache);
            super::stable_plans(&conn)?;
            connections.push(Mutex::new(conn));
        }
        Ok(Self {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// A read connection that is free right now, without waiting.
    pub(super) fn try_get(&self) -> Option<MutexGuard<'_, Connection>> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .filter_map(|i| self.connections.get((start + i) % count))
            .find_map(|conn| conn.try_lock().ok())
    }

    /// A free read connection (waiting for one when all are busy), or
    /// `None` when this database has none (in memory).
    pub(super) fn get(&self) -> Option<MutexGuard<'_, Connection>> {
        if self.connections.is_empty() {
            return None;
        }
        self.try_get().or_else(|| {
            // All busy: wait for one. A panic while reading leaves nothing
            // half-done, so a poisoned lock is usable.
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
            self.connections
                .get(i)
                .map(|conn| conn.lock().unwrap_or_else(PoisonError::into_inner))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Readers;

    #[test]
    fn a_reader_sees_what_the_writer_committed_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer
            .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let readers = Readers::open(&path, 2, 8).unwrap();
        let reader = readers.get().unwrap();
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let sum: i64 = reader
            .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 3);
        assert!(reader.execute("INSERT INTO t VALUES (3)", []).is_err());
        // The second reader is free while the first is held; with both
        // held there is none to take without waiting.
        let second = readers.try_get();
        assert!(second.is_some());
        assert!(readers.try_get().is_none());
        drop(second);
        assert!(readers.try_get().is_some());
    }

    #[test]
    fn readers_keep_their_query_plans_across_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        drop(rusqlite::Connection::open(&path).unwrap());
        let readers = Readers::open(&path, 1, 8).unwrap();
        let qpsg = rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG;
        assert!(readers.get().unwrap().db_config(qpsg).unwrap());
    }

    #[test]
    fn an_in_memory_database_has_no_readers() {
        let readers = Readers::open(std::path::Path::new(":memory:"), 4, 8).unwrap();
        assert!(readers.get().is_none());
    }
}
