//! The embedded SQLite [`Storage`] (SPEC.md §14).
//!
//! One connection behind a mutex: SQLite allows one writer at a time anyway,
//! and every method is a short transaction. The trait is async; this
//! backend keeps its blocking inside: a read or a cold write runs through
//! [`blocking`] (off the async workers), and the hot writes are jobs of the
//! group-commit writer thread whose commit the caller awaits.
//!
//! Durability: WAL journal with `synchronous = FULL`, so every commit fsyncs
//! the WAL before `COMMIT` returns; a send is acknowledged only after that
//! (with `NORMAL` alone, a WAL commit survives a process crash but not a
//! power loss, which would break "acknowledged means stored"). The hot
//! writes (enqueue, group fan-out, acknowledgements, login times) go
//! through group commit ([`group_commit`]): concurrent requests share one
//! transaction, committed without waiting for the disk, and one fsync of the
//! WAL by a sync thread ([`wal_sync`]) while the next batch is written; each
//! returns only after that fsync.
//!
//! Schema versions: see [`super::schema`] (`PRAGMA user_version`, one script
//! per version, applied in order).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

mod admin;
mod analytics;
mod attachments;
mod device_lists;
pub mod group_commit;
mod groups;
mod provisioning;
mod readers;
mod sealed;
mod statements;
mod suspension;
mod wal_sync;

use group_commit::{GroupCommit, Isolation};
use statements::QueryRowCached as _;

use super::device_rules::{
    adds_one_time_keys, check_recipient, check_removable, check_stock, first_keys,
};
use super::schema::{MigrateError, migrate, schema_version};
use super::values::{count, net_id, sql_id, sql_time};
use super::{
    AccountRecord, BundleRecord, DeviceRecord, FetchPage, NewAccount, OneTimeKey, OutgoingEnvelope,
    OwnedSendMeta, PrekeyCaps, PrekeyStock, PrekeyUpload, SendMeta, SignedKey, Storage,
    StorageError, StorageResult, StoredEnvelope,
};
use crate::queue_caps::{Room, room_by_length, room_by_share};

/// Errors opening the database.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused to open or configure the file.
    #[error("cannot open database {path}: {source}")]
    Sqlite {
        /// The file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The group-commit writer thread could not be started.
    #[error("cannot start the storage writer thread: {0}")]
    Writer(std::io::Error),
    /// The file was written by a newer server (unknown schema version).
    #[error("database schema version {found} is newer than this server's {supported}")]
    TooNew {
        /// `user_version` in the file.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
}

/// Log pages between automatic checkpoints (SQLite's default: 1 000).
/// The checkpoint runs on the writer thread that every send waits for,
/// and each one copies the hot pages (the queues' index leaves, the device
/// rows) into the database file again: at 1 000 pages a saturated run
/// checkpointed dozens of times a second. Ten times fewer: about 10 %
/// more messages/s in `microbot-loadgen pairs` (six runs against three,
/// 29 400 against 26 800 msg/s) and fewer bytes written, for a WAL file of
/// up to about 40 MiB.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements kept per connection (every statement of this module fits).
const STATEMENT_CACHE: usize = 128;

/// SQLite-backed storage.
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
    writer: GroupCommit,
    readers: readers::Readers,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage").finish_non_exhaustive()
    }
}

/// Runs one storage call's blocking work (the connection's mutex, SQLite's
/// disk I/O) without stalling the async runtime that awaits it: on a
/// multi-thread runtime the worker hands its other tasks to another thread
/// first (`block_in_place`), so the call borrows its arguments instead of
/// copying them onto the blocking pool. A current-thread runtime (the
/// admin command line, tests) has no other worker to hand over to, and a
/// plain thread has no runtime at all: there the call simply runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Keeps a cached statement's query plan when new values are bound to it
/// (SQLite's query planner stability guarantee). Without it SQLite parses
/// and plans some statements again on every new binding (a `removed = 0`
/// next to a bound key is enough): in profiles of a group send that was
/// 12 % of the writer's time, for the per-member device lookup.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
}

fn db(e: rusqlite::Error) -> StorageError {
    StorageError::Database(e.to_string())
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and migrates its schema.
    ///
    /// # Errors
    /// [`OpenError`].
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let wrap = |source| OpenError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(wrap)?;
        // The writer checkpoints every WAL_CHECKPOINT_PAGES log pages
        // instead of SQLite's 1 000 (see the constant).
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(wrap)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(wrap)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        stable_plans(&conn).map_err(wrap)?;
        migrate(&mut conn).map_err(|e| match e {
            MigrateError::Sqlite(source) => wrap(source),
            MigrateError::TooNew(found) => OpenError::TooNew {
                found,
                supported: schema_version(),
            },
        })?;
        let readers =
            readers::Readers::open(path, readers::READERS, STATEMENT_CACHE).map_err(wrap)?;
        let conn = Arc::new(Mutex::new(conn));
        let writer = GroupCommit::start(Arc::clone(&conn)).map_err(OpenError::Writer)?;
        Ok(Self {
            conn,
            writer,
            readers,
        })
    }

    /// A connection for statements that only read: one of the read
    /// connections, which do not wait for the writer's commits, or the
    /// writer's connection for an in-memory database.
    fn read(&self) -> MutexGuard<'_, Connection> {
        self.readers.get().unwrap_or_else(|| self.lock())
    }

    /// Runs a point lookup (a few rows found by key) on a read connection.
    /// When one is free at once the lookup runs right here: it takes
    /// microseconds, less than handing the worker thread over for a
    /// blocking call, which showed in profiles of the login path. Otherwise
    /// it waits for a connection as any blocking call does ([`blocking`]).
    fn lookup<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        match self.readers.try_get() {
            Some(conn) => f(&conn),
            None => blocking(|| f(&self.read())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done transaction
        // behind (rusqlite rolls back on drop), so a poisoned lock is usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_tx<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StorageResult<T>) -> StorageResult<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let value = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(value)
    }
}

fn account_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        id: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        totp_secret: zeroize::Zeroizing::new(row.get(3)?),
        last_totp_step: row.get(4)?,
        active: row.get(5)?,
        bot: row.get(6)?,
    })
}

const ACCOUNT_COLUMNS: &str =
    "id, username, password_hash, totp_secret, last_totp_step, active, bot";

fn device_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: net_id(row.get(0)?),
        account_id: row.get(1)?,
        public_key: row.get(2)?,
        name: row.get(3)?,
        created_at_ms: net_id(row.get(4)?),
        last_login_ms: net_id(row.get(5)?),
        removed: row.get(6)?,
    })
}

const DEVICE_COLUMNS: &str =
    "id, account_id, public_key, name, created_at_ms, last_login_ms, removed";

fn delete_device_data(tx: &Transaction<'_>, device_id: i64) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM device_keys WHERE device_id = ?1", [device_id])?;
    tx.execute(
        "DELETE FROM one_time_prekeys WHERE device_id = ?1",
        [device_id],
    )?;
    tx.execute("DELETE FROM kem_prekeys WHERE device_id = ?1", [device_id])?;
    tx.execute("DELETE FROM envelopes WHERE device_id = ?1", [device_id])?;
    tx.execute(
        "UPDATE devices SET removed = 1, public_key = X'', name = '', queue_len = 0 WHERE id = ?1",
        [device_id],
    )?;
    Ok(())
}

fn stock(tx: &Connection, device_id: i64) -> rusqlite::Result<PrekeyStock> {
    let one_time: i64 = tx.query_row_cached(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?1",
        [device_id],
        |r| r.get(0),
    )?;
    let kem: i64 = tx.query_row_cached(
        "SELECT COUNT(*) FROM kem_prekeys WHERE device_id = ?1",
        [device_id],
        |r| r.get(0),
    )?;
    let signed: Option<i64> = tx
        .query_row_cached(
            "SELECT signed_prekey_id FROM device_keys WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(PrekeyStock {
        one_time: count(one_time),
        kem: count(kem),
        signed_prekey_id: signed.and_then(|id| u32::try_from(id).ok()).unwrap_or(0),
    })
}

fn take_bundle(tx: &Transaction<'_>, device_id: i64) -> rusqlite::Result<Option<BundleRecord>> {
    type KeysRow = (
        Vec<u8>,
        i64,
        Vec<u8>,
        Vec<u8>,
        Option<i64>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let keys: Option<KeysRow> = tx
        .query_row_cached(
            "SELECT k.identity_key, k.signed_prekey_id, k.signed_prekey, k.signed_prekey_signature, \
             k.last_resort_kem_id, k.last_resort_kem, k.last_resort_kem_signature \
             FROM device_keys k JOIN devices d ON d.id = k.device_id \
             WHERE k.device_id = ?1 AND d.removed = 0",
            [device_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .optional()?;
    let Some((identity_key, spk_id, spk, spk_sig, lr_id, lr_pub, lr_sig)) = keys else {
        return Ok(None);
    };
    // Each one-time key is deleted in the same statement that reads it, inside
    // the caller's IMMEDIATE transaction: no two fetches can get the same key.
    let one_time_prekey = tx
        .query_row_cached(
            "DELETE FROM one_time_prekeys WHERE device_id = ?1 AND id = \
             (SELECT id FROM one_time_prekeys WHERE device_id = ?1 ORDER BY id LIMIT 1) \
             RETURNING id, public_key",
            [device_id],
            |r| {
                Ok(OneTimeKey {
                    id: r.get(0)?,
                    public_key: r.get(1)?,
                })
            },
        )
        .optional()?;
    let one_time_kem = tx
        .query_row_cached(
            "DELETE FROM kem_prekeys WHERE device_id = ?1 AND id = \
             (SELECT id FROM kem_prekeys WHERE device_id = ?1 ORDER BY id LIMIT 1) \
             RETURNING id, public_key, signature",
            [device_id],
            |r| {
                Ok(SignedKey {
                    id: r.get(0)?,
                    public_key: r.get(1)?,
                    signature: r.get(2)?,
                })
            },
        )
        .optional()?;
    let kem_prekey = match (one_time_kem, lr_id, lr_pub, lr_sig) {
        (Some(key), _, _, _) => Some((key, false)),
        (None, Some(id), Some(public_key), Some(signature)) => Some((
            SignedKey {
                id: u32::try_from(id).unwrap_or(0),
                public_key,
                signature,
            },
            true,
        )),
        _ => None,
    };
    Ok(Some(BundleRecord {
        device_id: net_id(device_id),
        identity_key,
        signed_prekey: SignedKey {
            id: u32::try_from(spk_id).unwrap_or(0),
            public_key: spk,
            signature: spk_sig,
        },
        one_time_prekey,
        kem_prekey,
        stock: stock(tx, device_id)?,
    }))
}

/// Whether the queue of `device` can take one more envelope from this
/// sender, by the rule of [`crate::queue_caps`]: the device row's
/// `queue_len` first, and only when it says so, whether the device is of
/// the sender's own account and the sender's unexpired share of the queue.
pub(crate) fn has_room(tx: &Connection, meta: &SendMeta<'_>, device: i64) -> StorageResult<bool> {
    let queued: i64 = tx
        .query_row_cached(
            "SELECT queue_len FROM devices WHERE id = ?1",
            params![device],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?
        .unwrap_or(0);
    has_room_with_length(tx, meta, device, queued)
}

/// [`has_room`] for a queue already known to hold `queued` envelopes.
fn has_room_with_length(
    tx: &Connection,
    meta: &SendMeta<'_>,
    device: i64,
    queued: i64,
) -> StorageResult<bool> {
    let caps = meta.caps();
    match room_by_length(count(queued), caps) {
        Room::Yes => return Ok(true),
        Room::No => return Ok(false),
        Room::DependsOnShare => {}
    }
    let own: bool = tx
        .query_row_cached(
            "SELECT COALESCE((SELECT account_id FROM devices WHERE id = ?1) = \
             (SELECT account_id FROM devices WHERE id = ?2), 0)",
            params![device, sql_id(meta.sender_device_id)],
            |r| r.get(0),
        )
        .map_err(db)?;
    if own {
        return Ok(true);
    }
    let from_sender: i64 = tx
        .query_row_cached(
            "SELECT COUNT(*) FROM envelopes \
             WHERE device_id = ?1 AND sender_username = ?2 AND expires_at_ms > ?3",
            params![device, meta.sender_username, sql_time(meta.now_ms)],
            |r| r.get(0),
        )
        .map_err(db)?;
    Ok(room_by_share(false, count(from_sender), caps))
}

/// The enqueue transaction's work (on the writer thread): checks every
/// recipient device and queue cap, then inserts the envelopes. Nothing is
/// written before the last check ([`Isolation::ChecksFirst`]).
fn enqueue_job(
    tx: &Connection,
    meta: &OwnedSendMeta,
    envelopes: &[OutgoingEnvelope],
) -> StorageResult<Vec<u64>> {
    let meta = meta.borrowed();
    let mut full = Vec::new();
    for envelope in envelopes {
        let device = sql_id(envelope.recipient_device_id);
        let row: Option<(bool, i64)> = tx
            .prepare_cached("SELECT removed, queue_len FROM devices WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([device], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(db)?;
        check_recipient(
            envelope.recipient_device_id,
            row.map(|(removed, _)| removed),
        )?;
        let queued = row.map_or(0, |(_, queued)| queued);
        if !has_room_with_length(tx, &meta, device, queued)? {
            full.push(envelope.recipient_device_id);
        }
    }
    if !full.is_empty() {
        return Err(StorageError::QueueFull(full));
    }
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO envelopes (device_id, sender_username, sender_device_id, server_timestamp_ms, \
             expires_at_ms, ciphertext) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db)?;
    let mut ids = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        stmt.execute(params![
            sql_id(envelope.recipient_device_id),
            meta.sender_username,
            sql_id(meta.sender_device_id),
            sql_time(meta.now_ms),
            sql_time(meta.expires_at_ms),
            envelope.ciphertext.as_ref(),
        ])
        .map_err(db)?;
        ids.push(net_id(tx.last_insert_rowid()));
        grow_queue(tx, sql_id(envelope.recipient_device_id))?;
    }
    Ok(ids)
}

/// Counts one more envelope in the queue of `device`.
pub(crate) fn grow_queue(tx: &Connection, device: i64) -> StorageResult<()> {
    tx.prepare_cached("UPDATE devices SET queue_len = queue_len + 1 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([device]))
        .map_err(db)?;
    Ok(())
}

/// The acknowledgement's work (on the writer thread): deletes the listed
/// envelopes of the device and group messages nothing refers to any more.
/// It can fail only in the database itself ([`Isolation::ChecksFirst`]).
fn ack_job(tx: &Connection, device_id: u64, ids: &[u64]) -> StorageResult<u32> {
    let mut stmt = tx
        .prepare_cached(
            "DELETE FROM envelopes WHERE device_id = ?1 AND id = ?2 RETURNING group_message_id",
        )
        .map_err(db)?;
    let mut deleted = 0u32;
    let mut group_messages = Vec::new();
    for id in ids {
        let row: Option<Option<i64>> = stmt
            .query_row(params![sql_id(device_id), sql_id(*id)], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if let Some(group_message) = row {
            deleted = deleted.saturating_add(1);
            group_messages.extend(group_message);
        }
    }
    drop(stmt);
    if deleted > 0 {
        tx.prepare_cached("UPDATE devices SET queue_len = MAX(queue_len - ?2, 0) WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute(params![sql_id(device_id), deleted]))
            .map_err(db)?;
    }
    // A group message is stored once; it goes with its last reference.
    if !group_messages.is_empty() {
        let mut orphan = tx
            .prepare_cached(
                "DELETE FROM group_messages WHERE id = ?1 AND NOT EXISTS \
                 (SELECT 1 FROM envelopes WHERE group_message_id = ?1)",
            )
            .map_err(db)?;
        for group_message in group_messages {
            orphan.execute([group_message]).map_err(db)?;
        }
    }
    Ok(deleted)
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    async fn create_account(&self, account: &NewAccount<'_>) -> StorageResult<i64> {
        blocking(|| {
            self.with_tx(|tx| {
                let exists: Option<i64> = tx
                    .query_row_cached(
                        "SELECT id FROM accounts WHERE username = ?1",
                        [account.username],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if exists.is_some() {
                    return Err(StorageError::UsernameTaken);
                }
                tx.execute(
                    "INSERT INTO accounts (username, password_hash, totp_secret, created_at_ms, bot) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        account.username,
                        account.password_hash,
                        account.totp_secret,
                        sql_time(account.now_ms),
                        account.bot
                    ],
                )
                .map_err(db)?;
                let id = tx.last_insert_rowid();
                for hash in account.recovery_code_hashes {
                    tx.execute(
                        "INSERT OR IGNORE INTO recovery_codes (account_id, code_hash) VALUES (?1, ?2)",
                        params![id, hash.as_slice()],
                    )
                    .map_err(db)?;
                }
                Ok(id)
            })
        })
    }

    async fn account_by_username(&self, username: &str) -> StorageResult<Option<AccountRecord>> {
        self.lookup(|conn| {
            conn.query_row_cached(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = ?1"),
                [username],
                account_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    async fn account_by_id(&self, account_id: i64) -> StorageResult<Option<AccountRecord>> {
        self.lookup(|conn| {
            conn.query_row_cached(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                [account_id],
                account_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    async fn consume_totp_step(&self, account_id: i64, step: i64) -> StorageResult<bool> {
        blocking(|| {
            let changed = self
                .lock()
                .execute(
                    "UPDATE accounts SET last_totp_step = ?2 WHERE id = ?1 AND last_totp_step < ?2",
                    params![account_id, step],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
    }

    async fn activate_account(&self, account_id: i64) -> StorageResult<()> {
        blocking(|| {
            self.lock()
                .execute("UPDATE accounts SET active = 1 WHERE id = ?1", [account_id])
                .map_err(db)?;
            Ok(())
        })
    }

    async fn consume_recovery_code(
        &self,
        account_id: i64,
        code_hash: &[u8; 32],
    ) -> StorageResult<bool> {
        blocking(|| {
            let changed = self
                .lock()
                .execute(
                    "DELETE FROM recovery_codes WHERE account_id = ?1 AND code_hash = ?2",
                    params![account_id, code_hash.as_slice()],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
    }

    async fn set_password_hash(&self, account_id: i64, password_hash: &str) -> StorageResult<()> {
        blocking(|| {
            self.lock()
                .execute(
                    "UPDATE accounts SET password_hash = ?2 WHERE id = ?1",
                    params![account_id, password_hash],
                )
                .map_err(db)?;
            Ok(())
        })
    }

    async fn delete_account(&self, account_id: i64) -> StorageResult<Vec<u64>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut stmt = tx
                    .prepare(
                        "SELECT id FROM devices WHERE account_id = ?1 AND removed = 0 ORDER BY id",
                    )
                    .map_err(db)?;
                let ids = stmt
                    .query_map([account_id], |r| r.get::<_, i64>(0))
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                drop(stmt);
                for id in &ids {
                    delete_device_data(tx, *id).map_err(db)?;
                }
                tx.execute("DELETE FROM accounts WHERE id = ?1", [account_id])
                    .map_err(db)?;
                // Its attachments expire now: unknown to every request from
                // here on, and the sweeper deletes their rows and files.
                tx.execute(
                    "UPDATE attachments SET expires_at_ms = 0 WHERE account_id = ?1",
                    [account_id],
                )
                .map_err(db)?;
                // Its group memberships go with it; its groups left empty
                // go too (only those: no scan of every group).
                let groups = tx
                    .prepare("DELETE FROM group_members WHERE account_id = ?1 RETURNING group_id")
                    .and_then(|mut stmt| {
                        stmt.query_map([account_id], |r| r.get::<_, Vec<u8>>(0))?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(db)?;
                for group in groups {
                    tx.execute(
                        "DELETE FROM groups WHERE id = ?1 AND NOT EXISTS \
                         (SELECT 1 FROM group_members m WHERE m.group_id = ?1)",
                        [group],
                    )
                    .map_err(db)?;
                }
                Ok(ids.into_iter().map(net_id).collect())
            })
        })
    }

    async fn create_device(
        &self,
        account_id: i64,
        public_key: &[u8],
        name: &str,
        now_ms: u64,
    ) -> StorageResult<u64> {
        blocking(|| {
            let conn = self.lock();
            conn.execute(
                "INSERT INTO devices (account_id, public_key, name, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![account_id, public_key, name, sql_time(now_ms)],
            )
            .map_err(db)?;
            Ok(net_id(conn.last_insert_rowid()))
        })
    }

    async fn device(&self, device_id: u64) -> StorageResult<Option<DeviceRecord>> {
        self.lookup(|conn| {
            conn.query_row_cached(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"),
                [sql_id(device_id)],
                device_from_row,
            )
            .optional()
            .map_err(db)
        })
    }

    async fn account_devices(&self, account_id: i64) -> StorageResult<Vec<DeviceRecord>> {
        self.lookup(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE account_id = ?1 AND removed = 0 ORDER BY id"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map([account_id], device_from_row)
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    async fn record_login(&self, device_id: u64, now_ms: u64) -> StorageResult<()> {
        self.writer
            .submit(Isolation::Savepoint, move |conn| {
                conn.prepare_cached("UPDATE devices SET last_login_ms = ?2 WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![sql_id(device_id), sql_time(now_ms)]))
                    .map_err(db)?;
                Ok(())
            })
            .await
    }

    async fn remove_device(&self, account_id: i64, device_id: u64) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                let row: Option<(i64, bool)> = tx
                    .query_row_cached(
                        "SELECT account_id, removed FROM devices WHERE id = ?1",
                        [sql_id(device_id)],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db)?;
                check_removable(device_id, account_id, row)?;
                delete_device_data(tx, sql_id(device_id)).map_err(db)
            })
        })
    }

    async fn upload_prekeys_capped(
        &self,
        device_id: u64,
        upload: &PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StorageResult<()> {
        blocking(|| {
            let device = sql_id(device_id);
            self.with_tx(|tx| {
                let has_keys: bool = tx
                    .query_row_cached(
                        "SELECT EXISTS(SELECT 1 FROM device_keys WHERE device_id = ?1)",
                        [device],
                        |r| r.get(0),
                    )
                    .map_err(db)?;
                if !has_keys {
                    let (identity, spk) = first_keys(upload)?;
                    tx.execute(
                        "INSERT INTO device_keys (device_id, identity_key, signed_prekey_id, signed_prekey, \
                         signed_prekey_signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![device, identity, spk.id, spk.public_key, spk.signature],
                    )
                    .map_err(db)?;
                } else {
                    if let Some(identity) = &upload.identity_key {
                        tx.execute(
                            "UPDATE device_keys SET identity_key = ?2 WHERE device_id = ?1",
                            params![device, identity],
                        )
                        .map_err(db)?;
                    }
                    if let Some(spk) = &upload.signed_prekey {
                        tx.execute(
                            "UPDATE device_keys SET signed_prekey_id = ?2, signed_prekey = ?3, \
                             signed_prekey_signature = ?4 WHERE device_id = ?1",
                            params![device, spk.id, spk.public_key, spk.signature],
                        )
                        .map_err(db)?;
                    }
                }
                if let Some(kem) = &upload.last_resort_kem_prekey {
                    tx.execute(
                        "UPDATE device_keys SET last_resort_kem_id = ?2, last_resort_kem = ?3, \
                         last_resort_kem_signature = ?4 WHERE device_id = ?1",
                        params![device, kem.id, kem.public_key, kem.signature],
                    )
                    .map_err(db)?;
                }
                for key in &upload.one_time_prekeys {
                    tx.execute(
                        "INSERT OR REPLACE INTO one_time_prekeys (device_id, id, public_key) VALUES (?1, ?2, ?3)",
                        params![device, key.id, key.public_key],
                    )
                    .map_err(db)?;
                }
                for key in &upload.kem_prekeys {
                    tx.execute(
                        "INSERT OR REPLACE INTO kem_prekeys (device_id, id, public_key, signature) VALUES (?1, ?2, ?3, ?4)",
                        params![device, key.id, key.public_key, key.signature],
                    )
                    .map_err(db)?;
                }
                // Over the cap: the transaction is dropped, nothing is stored.
                if adds_one_time_keys(upload) {
                    check_stock(stock(tx, device).map_err(db)?, caps)?;
                }
                Ok(())
            })
        })
    }

    async fn take_bundles(&self, device_ids: &[u64]) -> StorageResult<Vec<BundleRecord>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut bundles = Vec::with_capacity(device_ids.len());
                for id in device_ids {
                    if let Some(bundle) = take_bundle(tx, sql_id(*id)).map_err(db)? {
                        bundles.push(bundle);
                    }
                }
                Ok(bundles)
            })
        })
    }

    async fn prekey_stock(&self, device_id: u64) -> StorageResult<PrekeyStock> {
        self.lookup(|conn| stock(conn, sql_id(device_id)).map_err(db))
    }

    async fn enqueue(
        &self,
        meta: &SendMeta<'_>,
        envelopes: &[OutgoingEnvelope],
    ) -> StorageResult<Vec<u64>> {
        // The job runs on the writer thread: it owns copies (the ciphertexts
        // are reference-counted `Bytes`, not copied). The future resolves
        // after the batch's commit, without a thread blocked in between.
        let meta = OwnedSendMeta::from(meta);
        let envelopes = envelopes.to_vec();
        self.writer
            .submit(Isolation::ChecksFirst, move |tx| {
                enqueue_job(tx, &meta, &envelopes)
            })
            .await
    }

    async fn fetch_envelopes(
        &self,
        device_id: u64,
        after: u64,
        page: FetchPage,
    ) -> StorageResult<(Vec<StoredEnvelope>, bool)> {
        // A page is bounded (count and bytes) and read by index: a lookup.
        self.lookup(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.id, e.device_id, e.sender_username, e.sender_device_id, e.server_timestamp_ms, \
                     COALESCE(g.ciphertext, e.ciphertext), g.group_id \
                     FROM envelopes e LEFT JOIN group_messages g ON g.id = e.group_message_id \
                     WHERE e.device_id = ?1 AND e.id > ?2 AND e.expires_at_ms > ?3 ORDER BY e.id",
                )
                .map_err(db)?;
            // Rows are read lazily: the loop stops at the limit or the byte
            // budget, so a large queue is never loaded whole.
            let mut rows = stmt
                .query(params![
                    sql_id(device_id),
                    sql_id(after),
                    sql_time(page.now_ms)
                ])
                .map_err(db)?;
            let mut out = Vec::new();
            let mut used = 0usize;
            while let Some(r) = rows.next().map_err(db)? {
                let ciphertext: Vec<u8> = r.get(5).map_err(db)?;
                if !page.admit(out.len(), &mut used, ciphertext.len()) {
                    return Ok((out, true));
                }
                out.push(StoredEnvelope {
                    id: net_id(r.get(0).map_err(db)?),
                    device_id: net_id(r.get(1).map_err(db)?),
                    sender_username: r.get(2).map_err(db)?,
                    sender_device_id: net_id(r.get(3).map_err(db)?),
                    server_timestamp_ms: net_id(r.get(4).map_err(db)?),
                    ciphertext: bytes::Bytes::from(ciphertext),
                    group_id: r.get(6).map_err(db)?,
                });
            }
            Ok((out, false))
        })
    }

    async fn ack_envelopes(&self, device_id: u64, ids: &[u64]) -> StorageResult<u32> {
        let ids = ids.to_vec();
        self.writer
            .submit(Isolation::ChecksFirst, move |tx| {
                ack_job(tx, device_id, &ids)
            })
            .await
    }

    async fn queue_len(&self, device_id: u64, now_ms: u64) -> StorageResult<u32> {
        // Every login asks: on a read connection, not behind the writer's
        // lock (where it waited for the batch in progress and its fsync).
        self.lookup(|conn| {
            let n: i64 = conn
                .query_row_cached(
                    "SELECT COUNT(*) FROM envelopes WHERE device_id = ?1 AND expires_at_ms > ?2",
                    params![sql_id(device_id), sql_time(now_ms)],
                    |r| r.get(0),
                )
                .map_err(db)?;
            Ok(count(n))
        })
    }

    async fn purge_expired(&self, now_ms: u64) -> StorageResult<u64> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "UPDATE devices SET queue_len = MAX(queue_len - (SELECT COUNT(*) FROM envelopes e \
                     WHERE e.device_id = devices.id AND e.expires_at_ms <= ?1), 0) \
                     WHERE id IN (SELECT device_id FROM envelopes WHERE expires_at_ms <= ?1)",
                    [sql_time(now_ms)],
                )
                .map_err(db)?;
                let n = tx
                    .execute(
                        "DELETE FROM envelopes WHERE expires_at_ms <= ?1",
                        [sql_time(now_ms)],
                    )
                    .map_err(db)?;
                // Also collects group messages orphaned by device removal.
                tx.execute(
                    "DELETE FROM group_messages WHERE NOT EXISTS \
                     (SELECT 1 FROM envelopes WHERE group_message_id = group_messages.id)",
                    [],
                )
                .map_err(db)?;
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            })
        })
    }

    async fn purge_unconfirmed_accounts(&self, created_before_ms: u64) -> StorageResult<u64> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "DELETE FROM recovery_codes WHERE account_id IN \
                     (SELECT id FROM accounts WHERE active = 0 AND created_at_ms <= ?1)",
                    [sql_time(created_before_ms)],
                )
                .map_err(db)?;
                let n = tx
                    .execute(
                        "DELETE FROM accounts WHERE active = 0 AND created_at_ms <= ?1",
                        [sql_time(created_before_ms)],
                    )
                    .map_err(db)?;
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            })
        })
    }

    async fn total_queued(&self, _now_ms: u64) -> StorageResult<u64> {
        blocking(|| {
            let n: i64 = self
                .read()
                .query_row_cached("SELECT COALESCE(SUM(queue_len), 0) FROM devices", [], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_keeps_its_query_plans_across_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("db.sqlite3")).unwrap();
        let qpsg = rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG;
        assert!(storage.lock().db_config(qpsg).unwrap());
    }

    #[test]
    fn the_writer_fsyncs_outside_batches_and_checkpoints_every_ten_thousand_pages() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("db.sqlite3")).unwrap();
        let conn = storage.lock();
        let pages: i64 = conn
            .query_row_cached("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, WAL_CHECKPOINT_PAGES);
        let synchronous: i64 = conn
            .query_row_cached("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            synchronous, 2,
            "FULL for every write outside the writer's batches"
        );
    }

    #[test]
    fn migrations_set_user_version_and_reopen_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        drop(SqliteStorage::open(&path).unwrap());
        let storage = SqliteStorage::open(&path).unwrap();
        let version: i64 = storage
            .lock()
            .query_row_cached("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema_version());
        let mode: String = storage
            .lock()
            .query_row_cached("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn version_3_keeps_accounts_and_codes_and_never_reuses_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            // A version-2 file: account 2 was deleted (its removed device
            // row still names it), account 1 is alive with a recovery code.
            let conn = Connection::open(&path).unwrap();
            for script in &super::super::schema::MIGRATIONS[..2] {
                conn.execute_batch(script).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO accounts (id, username, password_hash, totp_secret, created_at_ms) \
                 VALUES (1, 'alice', 'h', X'00', 0); \
                 INSERT INTO recovery_codes VALUES (1, X'01'); \
                 INSERT INTO devices (account_id, public_key, name, created_at_ms, removed) \
                 VALUES (2, X'', '', 0, 1); \
                 INSERT INTO envelopes (device_id, sender_username, sender_device_id, \
                 server_timestamp_ms, expires_at_ms, ciphertext) \
                 VALUES (1, 'alice', 9, 0, 10, X'01'), (1, 'alice', 9, 0, 10, X'02');",
            )
            .unwrap();
        }
        let storage = SqliteStorage::open(&path).unwrap();
        assert_eq!(
            storage.account_by_id(1).await.unwrap().unwrap().username,
            "alice"
        );
        let codes: i64 = storage
            .lock()
            .query_row_cached(
                "SELECT COUNT(*) FROM recovery_codes WHERE account_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(codes, 1, "recovery codes survive the rebuild");
        assert_eq!(
            storage.total_queued(0).await.unwrap(),
            2,
            "version 6 counts queues"
        );
        let id = storage
            .create_account(&NewAccount {
                username: "bob",
                password_hash: "h",
                totp_secret: &[0],
                recovery_code_hashes: &[],
                now_ms: 0,
                bot: false,
            })
            .await
            .unwrap();
        assert_eq!(id, 3, "above every id still named anywhere");
        storage.delete_account(id).await.unwrap();
        let next = storage
            .create_account(&NewAccount {
                username: "carol",
                password_hash: "h",
                totp_secret: &[0],
                recovery_code_hashes: &[],
                now_ms: 0,
                bot: false,
            })
            .await
            .unwrap();
        assert_eq!(next, 4, "a deleted account's id is not reused");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        assert!(matches!(
            SqliteStorage::open(&path),
            Err(OpenError::TooNew { found: 99, .. })
        ));
    }
}
