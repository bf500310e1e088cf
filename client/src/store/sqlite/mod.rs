//! The default backend: one SQLite file per account and device (WAL mode,
//! exclusively locked while open), the store's rows in the tables of
//! schema.rs. The SQL lives here and only here; what the rows mean is
//! decided above the [`Backend`] trait.
//!
//! Not owned here: the rules (the store's typed transaction), the key
//! (store/key.rs).

mod convert;
pub(crate) mod file;
pub(crate) mod schema;
mod tx;

use std::path::Path;

use rusqlite::Connection;

use super::backend::{Backend, BackendTx};
use crate::error::{OpenError, StoreError};
use file::OpenMode;

/// A store in a SQLite file.
pub(crate) struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens the file at `path` in `mode` (locked, see file.rs) and brings
    /// its schema up to date.
    ///
    /// # Errors
    /// As [`file::open_connection`] and [`schema::migrate`].
    pub(crate) fn open(path: &Path, mode: OpenMode) -> Result<Self, OpenError> {
        let mut conn = file::open_connection(path, mode)?;
        schema::migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// The connection, for the tests that look at the SQL itself.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Backend for SqliteBackend {
    fn begin(&mut self) -> Result<Box<dyn BackendTx + '_>, StoreError> {
        Ok(Box::new(tx::SqliteTx::begin(&mut self.conn)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_query_uses_its_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend =
            SqliteBackend::open(&dir.path().join("store.db"), OpenMode::Create).expect("open");
        let mut stmt = backend
            .connection()
            .prepare(&format!("EXPLAIN QUERY PLAN {}", tx::HISTORY_PAGE))
            .expect("prepare");
        let plan = stmt
            .query_map(rusqlite::params!["u:bob", 10, 3], |row| {
                row.get::<_, String>(3)
            })
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows")
            .join("; ");
        assert!(plan.contains("messages_history"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
