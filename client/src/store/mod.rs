//! The local store: the account's state, kept by a storage backend —
//! one SQLite file per account and device by default, memory only for
//! tests and throwaway bots, or the application's own database — and
//! optionally encrypted at rest (a passphrase; the values are sealed
//! before any backend sees them).
//!
//! It keeps the account profile (username, device id, server, identity
//! seed, device key, prekeys), contacts with their trusted identity keys,
//! pairwise sessions per (contact, device), message history, the ids of
//! envelopes already processed, the outbox (with the pending uploads of
//! queued files, whose staging copies are kept in a directory next to the
//! store), group records and sender keys (ours per group, and every member
//! device's). Every multi-step change runs in one transaction
//! (`Store::tx`), so a crash leaves either the old or the new state.
//!
//! # Bringing a backend
//!
//! An application that keeps its data in its own database implements
//! [`Backend`] and [`BackendTx`] (rows in, rows out: see [`backend`] for
//! exactly what a backend is given and must keep, and [`MemoryBackend`]
//! for a complete example), then enrols and opens accounts over it with
//! [`crate::StoreConfig::from_backend`]. With a passphrase set, a backend
//! only ever sees sealed blobs plus the plain index fields (usernames,
//! conversation keys, ids, kinds, times, positions).
//!
//! The typed transaction the rest of the SDK uses sits above the trait and
//! holds every rule once (rows.rs, groups.rs, uploads.rs): sealing with
//! the right associated data, which session is used, history pages,
//! duplicates, the outbox order. The SQL is in sqlite/ only.
//!
//! Not owned here: what the values mean (sessions.rs, sync.rs, account/).

pub mod backend;
pub(crate) mod crypt;
mod groups;
mod key;
mod memory;
mod rows;
mod shared;
mod sqlite;
#[cfg(test)]
mod suite;
mod uploads;

use std::cell::{Ref, RefCell, RefMut};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

pub use backend::{
    Backend, BackendTx, ContactRecord, GroupEntry, HISTORY_KINDS, HistoryEntry, InboundKeyRecord,
    MessageRecord, OutboxRecord, ReceiptRecord, SendOutcomeRecord, SessionRecord, SharedKeyRecord,
    UploadRecord,
};
pub use memory::MemoryBackend;
pub(crate) use rows::{Contact, MessageRow, OutboxRow, SendOutcome};
pub(crate) use shared::SharedStore;
pub(crate) use uploads::{PARTIAL_SUFFIX, PendingUpload};

use crate::config::StoreConfig;
use crate::error::{DatabaseError, OpenError, StoreError};
use backend::BackendLease;
use crypt::Sealer;
use sqlite::SqliteBackend;
use sqlite::file::{CreatedFile, OpenMode, staging_dir_of};

/// How long opening waits for another store to let an application's
/// backend go: long enough for an account being dropped to wind down its
/// background task (as the SQLite file lock waits).
const LEASE_WAIT: Duration = Duration::from_secs(3);

/// The backend a store runs on.
enum Held {
    /// One the store opened (SQLite, memory).
    Own(Box<dyn Backend>),
    /// The application's, held until the store is dropped.
    Supplied(BackendLease),
}

impl Held {
    fn with<R>(&mut self, f: impl FnOnce(&mut dyn Backend) -> R) -> R {
        match self {
            Held::Own(backend) => f(backend.as_mut()),
            Held::Supplied(lease) => lease.with(f),
        }
    }
}

/// An open store.
pub(crate) struct Store {
    backend: Held,
    sealer: Sealer,
    /// The directory of the staging copies of queued files (uploads.rs).
    staging: PathBuf,
    /// For a store in memory: its temporary staging directory, removed
    /// with the store.
    _memory_staging: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("sealer", &self.sealer)
            .field("staging", &self.staging)
            .finish_non_exhaustive()
    }
}

/// A store opened for an enrolment: its file, when this process created
/// it, is removed on drop unless the enrolment [`keep`](NewStore::keep)s it.
#[derive(Debug)]
pub(crate) struct NewStore {
    // Dropped in this order: the connection closes before the file goes.
    store: Store,
    file: CreatedFile,
}

impl NewStore {
    /// The open store, for the enrolment's reads and writes.
    pub(crate) fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The enrolment succeeded: the file stays.
    pub(crate) fn keep(self) -> Store {
        let NewStore { store, file } = self;
        file.keep();
        store
    }
}

/// A transaction on the store: every read and write goes through one. The
/// typed methods (here, rows.rs, groups.rs, uploads.rs) seal, open and
/// apply the rules over the backend's rows.
pub(crate) struct Tx<'a> {
    rows: RefCell<Box<dyn BackendTx + 'a>>,
    sealer: &'a Sealer,
}

impl<'a> Tx<'a> {
    /// The backend transaction, to read.
    fn read(&self) -> Result<Ref<'_, Box<dyn BackendTx + 'a>>, StoreError> {
        self.rows.try_borrow().map_err(|_| reentered())
    }

    /// The backend transaction, to write.
    fn write(&self) -> Result<RefMut<'_, Box<dyn BackendTx + 'a>>, StoreError> {
        self.rows.try_borrow_mut().map_err(|_| reentered())
    }
}

/// A typed method asked for the backend while another held it (a bug).
fn reentered() -> StoreError {
    StoreError::Database(DatabaseError::new(
        "the store transaction was used while already in use",
    ))
}

impl Store {
    /// Opens the existing store and unlocks it.
    ///
    /// # Errors
    /// [`OpenError::NotFound`] when there is no file at the path,
    /// [`OpenError::InUse`] while another handle has it open, or why it
    /// cannot be read or unlocked.
    pub(crate) fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        Self::open_in(config, OpenMode::Existing)
    }

    /// Opens the store for an enrolment, creating its file when missing.
    /// A file created here is removed again when the [`NewStore`] is
    /// dropped without [`NewStore::keep`].
    ///
    /// # Errors
    /// As [`Store::open`], without [`OpenError::NotFound`].
    pub(crate) fn create(config: &StoreConfig) -> Result<NewStore, OpenError> {
        if config.in_memory || config.backend.is_some() {
            let store = Self::open_in(config, OpenMode::Create)?;
            return Ok(NewStore {
                store,
                file: CreatedFile::none(),
            });
        }
        let file = CreatedFile::before_open(&config.path);
        let store = Self::open_in(config, OpenMode::Create)?;
        Ok(NewStore { store, file })
    }

    fn open_in(config: &StoreConfig, mode: OpenMode) -> Result<Self, OpenError> {
        let (mut backend, staging, memory_staging) = if let Some(supplied) = &config.backend {
            let lease = lease(supplied, config)?;
            (Held::Supplied(lease), config.path.clone(), None)
        } else if config.in_memory {
            // Memory only: there is nothing to open again.
            if mode == OpenMode::Existing {
                return Err(OpenError::NotFound {
                    path: config.path.clone(),
                });
            }
            let dir = tempfile::Builder::new()
                .prefix("microbot-store-")
                .tempdir()
                .map_err(OpenError::TempDir)?;
            let memory: Box<dyn Backend> = Box::new(MemoryBackend::new());
            (Held::Own(memory), dir.path().join("uploads"), Some(dir))
        } else {
            let sqlite: Box<dyn Backend> = Box::new(SqliteBackend::open(&config.path, mode)?);
            (Held::Own(sqlite), staging_dir_of(&config.path), None)
        };
        let sealer = backend.with(|backend| key::unlock(backend, config))?;
        let mut store = Self {
            backend,
            sealer,
            staging,
            _memory_staging: memory_staging,
        };
        store.prune()?;
        store.sweep_staging()?;
        Ok(store)
    }

    /// Runs `f` in one transaction, committed only when `f` succeeds
    /// (an error, or a panic, leaves the store as it was).
    pub(crate) fn tx<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let sealer = &self.sealer;
        self.backend.with(|backend| {
            let rows = backend.begin().map_err(E::from)?;
            let tx = Tx {
                rows: RefCell::new(rows),
                sealer,
            };
            let value = f(&tx)?;
            tx.rows.into_inner().commit().map_err(E::from)?;
            Ok(value)
        })
    }

    /// Forgets processed-envelope ids older than any envelope can live.
    fn prune(&mut self) -> Result<(), StoreError> {
        let horizon = crate::now_ms().saturating_sub(60 * 24 * 3600 * 1000);
        self.tx(|tx| tx.write()?.prune_processed_envelopes(horizon))
    }
}

/// Takes the application's backend for one store, waiting a little for a
/// store being dropped to let it go.
fn lease(
    supplied: &backend::SuppliedBackend,
    config: &StoreConfig,
) -> Result<BackendLease, OpenError> {
    let deadline = Instant::now() + LEASE_WAIT;
    loop {
        if let Some(lease) = supplied.lease() {
            return Ok(lease);
        }
        if Instant::now() >= deadline {
            return Err(OpenError::InUse {
                path: config.path.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A new unencrypted store in a temporary directory, for unit tests (the
/// directory goes when the returned handle is dropped).
#[cfg(test)]
pub(crate) fn temporary() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(&crate::config::StoreConfig::new(
        dir.path().join("store.db"),
    ))
    .expect("store")
    .keep();
    (dir, store)
}

impl Tx<'_> {
    /// A plain meta value.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read()?.meta(key)
    }

    /// Sets a plain meta value.
    pub(crate) fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write()?.put_meta(key, value)
    }

    /// A sealed meta value, opened.
    pub(crate) fn secret(
        &self,
        what: &'static str,
        key: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.meta(key)?
            .map(|blob| self.sealer.open(what, &meta_ad(key), &blob))
            .transpose()
    }

    /// Seals and sets a meta value.
    pub(crate) fn set_secret(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set_meta(key, &self.sealer.seal(&meta_ad(key), value))
    }

    /// A plain meta value that must be a big-endian u64.
    pub(crate) fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.meta(key)?
            .map(|bytes| {
                <[u8; 8]>::try_from(bytes.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        what: "meta number",
                    })
            })
            .transpose()
    }

    /// A plain meta value that must be UTF-8.
    pub(crate) fn meta_string(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.meta(key)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|_| StoreError::Corrupt { what: "meta text" })
            })
            .transpose()
    }
}

fn meta_ad(key: &str) -> Vec<u8> {
    let mut ad = b"meta/".to_vec();
    ad.extend_from_slice(key.as_bytes());
    ad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use rusqlite::Connection;
    use sqlite::schema::MIGRATIONS;

    /// A store written before outbox rows recorded who queued them opens,
    /// and its queued rows still leave, announced as they were then.
    #[test]
    fn a_store_from_before_the_outbox_announce_column_opens_with_its_rows() {
        let before = MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN announce"))
            .expect("the announce migration");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = StoreConfig::new(dir.path().join("store.db"));
        let mut store = Store::create(&config).expect("store").keep();
        store
            .tx(|tx| tx.push_outbox("u:bob", &[1; 16], b"queued before", false))
            .expect("push");
        drop(store);
        // Back to the schema of a build from before the change (and so
        // without what later migrations add).
        let conn = Connection::open(&config.path).expect("raw open");
        conn.execute_batch(
            "ALTER TABLE outbox DROP COLUMN announce;
             DROP TABLE send_outcomes;
             DROP TABLE uploads;",
        )
        .expect("roll back");
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [i64::try_from(before).expect("small")],
        )
        .expect("version");
        drop(conn);

        let mut store = Store::open(&config).expect("the old store opens");
        let rows = store.tx(|tx| tx.outbox()).expect("outbox");
        assert_eq!(rows.len(), 1);
        assert!(rows[0].announce, "rows from before are announced");
        assert_eq!(rows[0].content.as_slice(), b"queued before");
        assert_eq!(rows[0].destination, "u:bob");
        store
            .tx(|tx| tx.delete_outbox(rows[0].seq))
            .expect("drained");
        assert_eq!(store.tx(|tx| tx.outbox_len()).expect("len"), 0);
    }
}
