//! Prepared-statement reuse for the SQLite storage: the hot lookups
//! (device, account, queue length, prekey stock) run on every login and
//! send, and parsing their SQL each time showed in profiles (issue 8).
//!
//! Not owned here: the statements themselves (sqlite.rs).

use rusqlite::Connection;

/// `query_row` through the connection's prepared-statement cache.
pub(super) trait QueryRowCached {
    /// Like `Connection::query_row`, with the statement cached.
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl QueryRowCached for Connection {
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
