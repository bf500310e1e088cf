//! Online backup and restore (SPEC.md §18.4), and the data-directory lock.
//!
//! A running server holds an exclusive advisory lock on
//! `<data_dir>/microbot.lock`; `restore` takes the same lock, so it refuses
//! to write into the data directory of a running server.
//!
//! `backup --to FILE` works while the server runs:
//! 1. FILE ← a consistent snapshot of `microbot.sqlite3`, copied with
//!    SQLite's online backup API in one step (one read transaction, so the
//!    snapshot is one committed state; writers are not blocked in WAL mode).
//!    Every envelope whose send was acknowledged before the backup started
//!    is in it.
//! 2. `FILE.files/attachments/<hex id>` ← for every attachment row in the
//!    snapshot, the first `committed` bytes of its file (files only grow
//!    past the committed offset, so those bytes are the committed ones).
//!    Rows whose file was purged meanwhile are deleted from the snapshot.
//! 3. `FILE.files/cert.pem`, `key.pem` (mode 0600) ← the generated
//!    certificate, when the data directory holds one, so clients' pins
//!    survive a restore.
//!
//! `restore --from FILE` (server stopped) copies these back into the data
//! directory; it refuses a directory that already holds a database unless
//! forced, and never touches one whose lock is held.
//!
//! Not owned here: PostgreSQL deployments (use `pg_dump`).

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

use crate::endpoint::{CERT_FILE, KEY_FILE};

/// Lock file in the data directory.
pub const LOCK_FILE: &str = "microbot.lock";
/// Database file name in the data directory.
pub const DATABASE_FILE: &str = "microbot.sqlite3";

/// Errors of backup, restore and the data-directory lock.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A server (or another restore) holds the data directory.
    #[error("data directory {0} is in use by a running server")]
    InUse(PathBuf),
    /// The target already holds a database (pass --force to replace it).
    #[error("{0} already holds a database; stop the server and pass --force to replace it")]
    Exists(PathBuf),
    /// No database to back up or restore.
    #[error("no database at {0}")]
    Missing(PathBuf),
    /// The directory the backup should be written to does not exist (it
    /// is not created: a typo would otherwise scatter backups).
    #[error("backup directory {0} does not exist (create it first)")]
    NoTargetDir(PathBuf),
    /// The backup path names a directory, not a file.
    #[error("{0} is a directory; give the backup file's path, e.g. {0}/microbot.sqlite3")]
    TargetIsDir(PathBuf),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database stayed locked for 30 s.
    #[error("database busy; backup not taken")]
    Busy,
    /// The backup file fails SQLite's integrity check.
    #[error("backup {0} is damaged")]
    Corrupt(PathBuf),
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Holds the exclusive lock on a data directory until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the exclusive lock of `data_dir` (which must exist).
///
/// # Errors
/// [`BackupError::InUse`] when another holder has it.
#[allow(clippy::incompatible_msrv)] // File::try_lock: the toolchain here is 1.95.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, BackupError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::InUse(data_dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(BackupError::Io { path, source }),
    }
}

/// Where the non-database files of a backup live.
pub fn files_dir(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".files");
    PathBuf::from(name)
}

/// What a backup contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Envelopes in the snapshot.
    pub envelopes: u64,
    /// Attachments copied.
    pub attachments: u64,
}

fn copy_prefix(from: &Path, to: &Path, len: u64) -> Result<(), BackupError> {
    let mut src = File::open(from).map_err(io(from))?;
    let mut dst = File::create(to).map_err(io(to))?;
    let copied = std::io::copy(&mut (&mut src).take(len), &mut dst).map_err(io(to))?;
    if copied != len {
        return Err(BackupError::Io {
            path: from.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shorter than committed",
            ),
        });
    }
    dst.sync_all().map_err(io(to))
}

fn copy_file(from: &Path, to: &Path) -> Result<(), BackupError> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(from).map_err(io(from))?);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(to).map_err(io(to))?;
    file.write_all(&bytes).map_err(io(to))?;
    file.sync_all().map_err(io(to))
}

/// Takes a consistent online backup of `data_dir` into `to` (and
/// `to.files/`). Safe while a server runs on `data_dir`.
///
/// # Errors
/// [`BackupError`].
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport, BackupError> {
    let db_path = data_dir.join(DATABASE_FILE);
    if !db_path.exists() {
        return Err(BackupError::Missing(db_path));
    }
    if to.is_dir() {
        return Err(BackupError::TargetIsDir(to.to_owned()));
    }
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(BackupError::NoTargetDir(parent.to_owned()));
    }
    let tmp = to.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    {
        let src = Connection::open(&db_path)?;
        src.busy_timeout(Duration::from_secs(30))?;
        let mut dst = Connection::open(&tmp)?;
        // -1: every page in one step, i.e. one read transaction: consistent.
        let copy = rusqlite::backup::Backup::new(&src, &mut dst)?;
        let mut tries = 0;
        loop {
            match copy.step(-1)? {
                rusqlite::backup::StepResult::Done => break,
                _ if tries < 300 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => return Err(BackupError::Busy),
            }
        }
    }
    let files = files_dir(to);
    if files.exists() {
        std::fs::remove_dir_all(&files).map_err(io(&files))?;
    }
    let attachments_to = files.join("attachments");
    std::fs::create_dir_all(&attachments_to).map_err(io(&attachments_to))?;
    let attachments_from = data_dir.join("attachments");
    let dst = Connection::open(&tmp)?;
    let rows: Vec<(Vec<u8>, i64)> = dst
        .prepare("SELECT id, committed FROM attachments")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut copied = 0u64;
    for (id, committed) in rows {
        let name = hex::encode(&id);
        let from = attachments_from.join(&name);
        let committed = u64::try_from(committed).unwrap_or(0);
        if committed > 0 && from.exists() {
            copy_prefix(&from, &attachments_to.join(&name), committed)?;
            copied += 1;
        } else if committed > 0 {
            // Purged after the snapshot: the row would point at nothing.
            dst.execute("DELETE FROM attachments WHERE id = ?1", params![id])?;
        } else {
            copied += 1;
        }
    }
    let envelopes: i64 = dst.query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get(0))?;
    drop(dst);
    for name in [CERT_FILE, KEY_FILE] {
        let from = data_dir.join(name);
        if from.exists() {
            copy_file(&from, &files.join(name))?;
        }
    }
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, to).map_err(io(to))?;
    Ok(BackupReport {
        envelopes: u64::try_from(envelopes).unwrap_or(0),
        attachments: copied,
    })
}

/// Restores a backup made by [`backup`] into `data_dir` (created if
/// needed). The server must not be running there.
///
/// # Errors
/// [`BackupError::InUse`], [`BackupError::Exists`] (without `force`),
/// [`BackupError::Missing`], I/O and SQLite errors.
pub fn restore(from: &Path, data_dir: &Path, force: bool) -> Result<(), BackupError> {
    if !from.exists() {
        return Err(BackupError::Missing(from.to_owned()));
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let _lock = lock_data_dir(data_dir)?;
    let db_path = data_dir.join(DATABASE_FILE);
    if db_path.exists() && !force {
        return Err(BackupError::Exists(data_dir.to_owned()));
    }
    // Check the snapshot opens and is sound before replacing anything.
    {
        let check = Connection::open(from)?;
        let ok: String = check.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(BackupError::Corrupt(from.to_owned()));
        }
    }
    let tmp = data_dir.join("microbot.sqlite3.restoring");
    std::fs::copy(from, &tmp).map_err(io(&tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    for stale in ["microbot.sqlite3-wal", "microbot.sqlite3-shm"] {
        let path = data_dir.join(stale);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    std::fs::rename(&tmp, &db_path).map_err(io(&db_path))?;
    let files = files_dir(from);
    let attachments_to = data_dir.join("attachments");
    if attachments_to.exists() {
        std::fs::remove_dir_all(&attachments_to).map_err(io(&attachments_to))?;
    }
    std::fs::create_dir_all(&attachments_to).map_err(io(&attachments_to))?;
    let attachments_from = files.join("attachments");
    if attachments_from.exists() {
        for entry in std::fs::read_dir(&attachments_from).map_err(io(&attachments_from))? {
            let entry = entry.map_err(io(&attachments_from))?;
            let to = attachments_to.join(entry.file_name());
            std::fs::copy(entry.path(), &to).map_err(io(&to))?;
        }
    }
    for name in [CERT_FILE, KEY_FILE] {
        let src = files.join(name);
        if src.exists() {
            copy_file(&src, &data_dir.join(name))?;
        }
    }
    Ok(())
}
