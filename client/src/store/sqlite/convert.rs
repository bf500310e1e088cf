//! SQLite's values and errors as the store's: its signed integers hold
//! ids and times bit for bit, and its errors become
//! [`StoreError::Database`] with the engine's error as the source.

use crate::error::{DatabaseError, OpenError, StoreError};

/// SQLite's errors as the store's: the engine's error stays the source.
pub(crate) trait Db<T> {
    /// The result with the error wrapped in [`StoreError::Database`].
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, rusqlite::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::Database(DatabaseError::new(error)))
    }
}

/// A SQLite error while opening.
pub(crate) fn open_error(error: rusqlite::Error) -> OpenError {
    OpenError::Store(StoreError::Database(DatabaseError::new(error)))
}

/// SQLite integers are signed; ids and times are stored bit-for-bit.
pub(crate) fn to_sql_u64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Inverse of [`to_sql_u64`].
pub(crate) fn from_sql_u64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// A position bound (`seq` below or above it) as SQLite compares it:
/// positions are small positive numbers, larger bounds saturate.
pub(super) fn seq_bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
