//! The local store: one SQLite file per account and device (WAL mode),
//! optionally encrypted at rest ([`crypt`]).
//!
//! It keeps the account profile (username, device id, server, identity
//! seed, device key, prekeys), contacts with their trusted identity keys,
//! pairwise sessions per (contact, device), message history, the ids of
//! envelopes already processed, the outbox (with the pending uploads of
//! queued files, whose staging copies are kept next to the store file),
//! group records and sender keys (ours per group, and every member
//! device's). Every multi-step change
//! runs in one transaction ([`Store::tx`]), so a crash leaves either the
//! old or the new state.
//!
//! Not owned here: what the values mean (sessions.rs, sync.rs, account/).

pub(crate) mod crypt;
mod file;
mod groups;
mod rows;
mod schema;
mod shared;
mod uploads;

use rand::Rng as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use zeroize::Zeroizing;

pub(crate) use rows::{Contact, MessageRow, OutboxRow, SendOutcome};
pub(crate) use shared::SharedStore;
pub(crate) use uploads::{PARTIAL_SUFFIX, PendingUpload};

use crate::config::{KdfParams, StoreConfig};
use crate::error::{OpenError, StoreError};
use crypt::Sealer;
use file::{CreatedFile, OpenMode, open_connection};

/// An open store.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
    sealer: Sealer,
    /// The directory of the staging copies of queued files (uploads.rs).
    staging: std::path::PathBuf,
    /// For a store in memory: its temporary staging directory, removed
    /// with the store.
    _memory_staging: Option<tempfile::TempDir>,
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

/// A transaction on the store: every read and write goes through one.
pub(crate) struct Tx<'a> {
    conn: &'a Connection,
    sealer: &'a Sealer,
}

impl Store {
    /// Opens the existing store file and unlocks it.
    ///
    /// # Errors
    /// [`OpenError::NotFound`] when there is no file at the path,
    /// [`OpenError::InUse`] while another handle has it open, or why it
    /// cannot be read or unlocked.
    pub(crate) fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        Self::open_in(config, OpenMode::Existing)
    }

    /// Opens the store file for an enrolment, creating it when missing.
    /// A file created here is removed again when the [`NewStore`] is
    /// dropped without [`NewStore::keep`].
    ///
    /// # Errors
    /// As [`Store::open`], without [`OpenError::NotFound`].
    pub(crate) fn create(config: &StoreConfig) -> Result<NewStore, OpenError> {
        if config.in_memory {
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
        let (mut conn, staging, memory_staging) = if config.in_memory {
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
            (file::open_memory()?, dir.path().join("uploads"), Some(dir))
        } else {
            (
                open_connection(&config.path, mode)?,
                file::staging_dir_of(&config.path),
                None,
            )
        };
        schema::migrate(&mut conn)?;
        let sealer = unlock(&conn, config)?;
        let mut store = Self {
            conn,
            sealer,
            staging,
            _memory_staging: memory_staging,
        };
        store.prune()?;
        store.sweep_staging()?;
        Ok(store)
    }

    /// Runs `f` in one transaction, committed only when `f` succeeds.
    pub(crate) fn tx<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| E::from(StoreError::from(e)))?;
        let value = f(&Tx {
            conn: &tx,
            sealer: &self.sealer,
        })?;
        tx.commit().map_err(|e| E::from(StoreError::from(e)))?;
        Ok(value)
    }

    /// Forgets processed-envelope ids older than any envelope can live.
    fn prune(&self) -> Result<(), StoreError> {
        let horizon = crate::now_ms().saturating_sub(60 * 24 * 3600 * 1000);
        self.conn.execute(
            "DELETE FROM processed_envelopes WHERE processed_ms < ?1",
            [to_sql_u64(horizon)],
        )?;
        Ok(())
    }
}

/// Reads or sets up the store's key.
fn unlock(conn: &Connection, config: &StoreConfig) -> Result<Sealer, OpenError> {
    let meta = |key: &str| -> Result<Option<Vec<u8>>, OpenError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    };
    let encrypted = meta("encrypted")?;
    match (encrypted.as_deref(), &config.passphrase) {
        // A new store: fix its protection now.
        (None, None) => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('encrypted', x'00')",
                [],
            )?;
            Ok(Sealer::Plain)
        }
        (None, Some(passphrase)) => {
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            let key = crypt::derive_key(passphrase, &salt, config.kdf)?;
            let sealer = Sealer::Sealed(key);
            let check = sealer.seal(crypt::KEY_CHECK_AD, crypt::KEY_CHECK_VALUE);
            let kdf = encode_kdf(config.kdf);
            let tx = conn.unchecked_transaction()?;
            for (key, value) in [
                ("encrypted", vec![1u8]),
                ("kdf_salt", salt.to_vec()),
                ("kdf_params", kdf),
                ("key_check", check),
            ] {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![key, value],
                )?;
            }
            tx.commit()?;
            Ok(sealer)
        }
        (Some([0]), None) => Ok(Sealer::Plain),
        (Some([0]), Some(_)) => Err(OpenError::NotEncrypted),
        (Some([1]), None) => Err(OpenError::PassphraseRequired),
        (Some([1]), Some(passphrase)) => {
            let corrupt = || {
                OpenError::Store(StoreError::Corrupt {
                    what: "store key parameters",
                })
            };
            let salt = meta("kdf_salt")?.ok_or_else(corrupt)?;
            let kdf = decode_kdf(&meta("kdf_params")?.ok_or_else(corrupt)?).ok_or_else(corrupt)?;
            let check = meta("key_check")?.ok_or_else(corrupt)?;
            let sealer = Sealer::Sealed(crypt::derive_key(passphrase, &salt, kdf)?);
            match sealer.open("key check", crypt::KEY_CHECK_AD, &check) {
                Ok(value) if value.as_slice() == crypt::KEY_CHECK_VALUE => Ok(sealer),
                Ok(_) | Err(StoreError::Tampered { .. }) => Err(OpenError::WrongPassphrase),
                Err(other) => Err(other.into()),
            }
        }
        (Some(_), _) => Err(OpenError::Store(StoreError::Corrupt {
            what: "store protection flag",
        })),
    }
}

fn encode_kdf(kdf: KdfParams) -> Vec<u8> {
    [kdf.memory_kib, kdf.iterations, kdf.parallelism]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn decode_kdf(bytes: &[u8]) -> Option<KdfParams> {
    let (m, rest) = bytes.split_first_chunk::<4>()?;
    let (t, rest) = rest.split_first_chunk::<4>()?;
    let (p, rest) = rest.split_first_chunk::<4>()?;
    rest.is_empty().then(|| KdfParams {
        memory_kib: u32::from_be_bytes(*m),
        iterations: u32::from_be_bytes(*t),
        parallelism: u32::from_be_bytes(*p),
    })
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

/// SQLite integers are signed; ids and times are stored bit-for-bit.
pub(crate) fn to_sql_u64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Inverse of [`to_sql_u64`].
pub(crate) fn from_sql_u64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

impl Tx<'_> {
    /// A plain meta value.
    pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Sets a plain meta value.
    pub(crate) fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
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
    use schema::MIGRATIONS;

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
