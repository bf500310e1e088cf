//! The store's file on disk: opened only when it is there (a mistyped path
//! is an error, not a new empty store), created only for an enrolment and
//! removed again when that enrolment fails, and held exclusively while
//! open, so two handles — in one process or two — never run one store.
//!
//! Its sibling directory `<file>.uploads` holds the staging copies of
//! queued files (uploads.rs).
//!
//! Not owned here: the schema (schema.rs) and the key (store/key.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::convert::Db as _;
use crate::error::OpenError;

/// How long opening waits for another handle to let the file go: long
/// enough for an account being dropped to wind down its background task.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Whether opening may create the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// The file must exist ([`crate::Account::open`]).
    Existing,
    /// The file is created when missing ([`crate::Account::enrol`]).
    Create,
}

/// Opens the file in `mode`, takes its exclusive lock and sets the
/// journal, durability and safety pragmas.
///
/// # Errors
/// [`OpenError::NotFound`] for a missing file in [`OpenMode::Existing`],
/// [`OpenError::InUse`] when another handle holds the store, or the
/// SQLite failure.
pub(crate) fn open_connection(path: &Path, mode: OpenMode) -> Result<Connection, OpenError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    match mode {
        OpenMode::Create => flags |= OpenFlags::SQLITE_OPEN_CREATE,
        OpenMode::Existing if !path.is_file() => {
            return Err(OpenError::NotFound {
                path: path.to_owned(),
            });
        }
        OpenMode::Existing => {}
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|error| match mode {
        OpenMode::Existing if is_cant_open(&error) => OpenError::NotFound {
            path: path.to_owned(),
        },
        _ => super::convert::open_error(error),
    })?;
    // Exclusive locking mode keeps the lock from the first write until
    // the connection closes; the empty exclusive transaction takes it now.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE").db()?;
    conn.busy_timeout(LOCK_WAIT).db()?;
    conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
        .map_err(|error| in_use_or(error, path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|error| in_use_or(error, path))?;
    conn.pragma_update(None, "synchronous", "FULL").db()?;
    conn.pragma_update(None, "foreign_keys", "ON").db()?;
    conn.pragma_update(None, "secure_delete", "ON").db()?;
    Ok(conn)
}

/// A busy or locked database means another handle has the store.
fn in_use_or(error: rusqlite::Error, path: &Path) -> OpenError {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            OpenError::InUse {
                path: path.to_owned(),
            }
        }
        _ => super::convert::open_error(error),
    }
}

fn is_cant_open(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
}

/// A store file this process created for an enrolment: removed with its
/// journal on drop unless [`CreatedFile::keep`] was called, so a failed
/// enrolment leaves nothing behind. A file that existed before is never
/// removed. Dropped after the connection (see `NewStore`).
#[derive(Debug)]
pub(crate) struct CreatedFile {
    path: Option<PathBuf>,
}

impl CreatedFile {
    /// Nothing on disk to clean up (a store in memory).
    pub(crate) fn none() -> Self {
        Self { path: None }
    }

    /// Notes whether `path` is about to be created (it does not exist yet).
    pub(crate) fn before_open(path: &Path) -> Self {
        Self {
            path: (!path.exists()).then(|| path.to_owned()),
        }
    }

    /// The enrolment succeeded: the file stays.
    pub(crate) fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for CreatedFile {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            // Nothing else to do if it cannot be removed: the next
            // enrolment into the path refuses only a store with an account.
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The staging directory of the store at `store_path`: its sibling
/// `<file name>.uploads`.
pub(crate) fn staging_dir_of(store_path: &Path) -> PathBuf {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".uploads");
    PathBuf::from(name)
}
