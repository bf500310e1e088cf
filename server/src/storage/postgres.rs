//! The PostgreSQL [`Storage`] for several server nodes sharing one database
//! (SPEC.md §14, §18 "Scale-out").
//!
//! Runs on the runtime that opened it (the server's): [`PostgresStorage::open`]
//! is async, the `tokio-postgres` connections and the batching writer tasks
//! are spawned there, and every method is an `async fn` awaiting its
//! statements (nothing blocks, no runtime of its own). Every method runs
//! in one transaction (`with_tx!`) or one atomic statement
//! (`with_client!`); a transaction that fails with a deadlock or a
//! serialisation failure is retried a few times before the error is
//! returned. The two writes of every message — enqueue and
//! acknowledgement — do not take a transaction each: a writer task commits
//! all that are waiting together ([`hot_writes`]), and the caller awaits
//! that commit.
//!
//! Concurrency across nodes, where SQLite relied on its single writer:
//! - one-time prekeys are taken with `FOR UPDATE SKIP LOCKED` and deleted in
//!   the same statement, so no two nodes hand out the same key;
//! - a TOTP step is consumed by a conditional `UPDATE` of the account row,
//!   which PostgreSQL serialises on the row, so a step is accepted once in
//!   the whole cluster;
//! - senders lock the recipient device rows (in id order, so two sends never
//!   deadlock) before counting and inserting: queue caps hold and each
//!   device's envelope ids increase in commit order;
//! - group changes lock the group row, so the expected-version check and the
//!   bump commit together.
//!
//! Schema versions: see [`schema`] (an advisory lock serialises nodes that
//! migrate at the same time). Durability: `COMMIT` returns after the WAL is
//! flushed (PostgreSQL's default `synchronous_commit = on`), so a send is
//! acknowledged only once stored.
//!
//! Not owned here: attachment bytes (files under the attachments directory,
//! which a cluster must share; docs/OPERATIONS.md).

/// `with_tx!(storage, |tx| async { … })`: runs the block in a transaction
/// on a pooled connection and commits it, retrying the whole block on a
/// deadlock or serialisation failure; a [`StorageResult`] of the block's
/// value. A macro rather than a method taking an async closure: the
/// block is inlined into the caller's future, which then stays `Send`
/// (a higher-ranked async closure's future is not provably `Send`).
macro_rules! with_tx {
    ($storage:expr, |$db:ident| $body:expr) => {
        async {
            let mut pooled = $storage.pool.get().await?;
            let (client, cache) = pooled.parts()?;
            let mut attempt = 1;
            loop {
                let outcome: $crate::storage::postgres::PgResult<_> = async {
                    let tx = client.transaction().await?;
                    let value = {
                        let $db = &$crate::storage::postgres::db::Db { client: &tx, cache };
                        let value: $crate::storage::postgres::PgResult<_> = $body.await;
                        value?
                    };
                    tx.commit().await?;
                    Ok(value)
                }
                .await;
                match outcome {
                    Err(e) if e.retryable() && attempt < $crate::storage::postgres::ATTEMPTS => {
                        attempt += 1
                    }
                    other => return other,
                }
            }
        }
        .await
        .map_err($crate::storage::postgres::PgError::into_storage)
    };
}

/// `with_client!(storage, |db| async { … })`: runs the block (one
/// statement, atomic by itself) on a pooled connection outside a
/// transaction: one round trip instead of three. A [`StorageResult`].
macro_rules! with_client {
    ($storage:expr, |$db:ident| $body:expr) => {
        async {
            let mut pooled = $storage.pool.get().await?;
            let (client, cache) = pooled.parts()?;
            let $db = &$crate::storage::postgres::db::Db {
                client: &*client,
                cache,
            };
            let value: $crate::storage::postgres::PgResult<_> = $body.await;
            value
        }
        .await
        .map_err($crate::storage::postgres::PgError::into_storage)
    };
}

mod admin;
mod analytics;
mod attachments;
mod db;
mod device_lists;
mod groups;
mod hot_writes;
mod pool;
mod provisioning;
pub mod schema;
mod sealed;
mod suspension;

use std::fmt;
use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;

use self::db::{Db, Tx};
use self::hot_writes::{FlushWait, HotWriter};
use self::pool::Pool;
use super::device_rules::{adds_one_time_keys, check_removable, check_stock, first_keys};
pub(crate) use super::values::{count, net_id, sql_id, sql_time};
use super::{
    AccountRecord, BundleRecord, DeviceRecord, FetchPage, NewAccount, OneTimeKey, OutgoingEnvelope,
    OwnedSendMeta, PrekeyCaps, PrekeyStock, PrekeyUpload, SendMeta, SignedKey, Storage,
    StorageError, StorageResult, StoredEnvelope,
};
use crate::queue_caps::{Room, room_by_length, room_by_share};

/// Default number of pooled connections per node.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Attempts of a transaction that hits a deadlock or serialisation failure.
const ATTEMPTS: u32 = 4;
/// Rows read per round trip while paging through a queue.
const FETCH_CHUNK: i32 = 16;

/// Errors opening the database.
#[derive(Debug, thiserror::Error)]
pub enum PostgresOpenError {
    /// The URL is not a valid PostgreSQL connection string.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// Connecting or migrating failed.
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// The database was migrated by a newer server.
    #[error("database schema version {found} is newer than this server's {supported}")]
    TooNew {
        /// Version found in `microbot_schema`.
        found: i32,
        /// Highest version this build knows.
        supported: i32,
    },
}

/// Errors inside one transaction: a storage outcome or a database error
/// (kept whole so deadlocks can be told apart and retried).
pub(crate) enum PgError {
    Storage(StorageError),
    Db(tokio_postgres::Error),
    TooNew(i32),
    Closed,
    /// The pool could not hand out a connection for another reason (its
    /// words).
    Pool(String),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<StorageError> for PgError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl PgError {
    fn retryable(&self) -> bool {
        matches!(self, Self::Db(e) if e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
            || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE))
    }

    fn into_storage(self) -> StorageError {
        match self {
            Self::Storage(e) => e,
            Self::Db(e) => StorageError::Database(with_causes(&e)),
            Self::TooNew(v) => StorageError::Database(format!("schema version {v} is too new")),
            Self::Closed => StorageError::Database("connection pool closed".to_owned()),
            Self::Pool(e) => StorageError::Database(format!("connection pool: {e}")),
        }
    }
}

pub(crate) type PgResult<T> = Result<T, PgError>;

/// `error` and every cause under it: tokio-postgres prints only its kind
/// ("db error"), the engine's own message (e.g. `password authentication
/// failed for user "…"`, never the password) is its source.
fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        let words = inner.to_string();
        if !text.ends_with(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        cause = inner.source();
    }
    text
}

/// PostgreSQL-backed storage shared by every node of a cluster.
pub struct PostgresStorage {
    pool: Arc<Pool>,
    writer: HotWriter,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the URL: it may carry a password.
        f.debug_struct("PostgresStorage").finish_non_exhaustive()
    }
}

fn key_id(id: i64) -> u32 {
    u32::try_from(id).unwrap_or(0)
}

/// Column `index` of `row`, as a typed error instead of a panic.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a tokio_postgres::Row, index: usize) -> PgResult<T> {
    Ok(row.try_get(index)?)
}

impl PostgresStorage {
    /// Connects to `url` (`postgres://user:password@host:port/db`, with
    /// optional `?options=-c search_path=…`), applies pending migrations,
    /// and keeps up to `pool_size` connections.
    ///
    /// # Errors
    /// [`PostgresOpenError`].
    pub async fn open(url: &str, pool_size: usize) -> Result<Self, PostgresOpenError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| PostgresOpenError::Url(e.to_string()))?;
        let pool = Arc::new(Pool::new(config, pool_size).map_err(PostgresOpenError::Database)?);
        let migrated = async {
            let mut pooled = pool.get().await?;
            let client = pooled.parts()?.0;
            schema::migrate(client).await?;
            FlushWait::available(client).await
        }
        .await;
        match migrated {
            Ok(flush) => {
                if flush == FlushWait::InCommit {
                    tracing::warn!(
                        "this role may not execute pg_logical_emit_message: each message \
                         batch holds its row locks until the WAL flush (slower under load; \
                         GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) \
                         to lift it)"
                    );
                }
                Ok(Self {
                    writer: HotWriter::start(Arc::clone(&pool), flush),
                    pool,
                })
            }
            Err(PgError::TooNew(found)) => Err(PostgresOpenError::TooNew {
                found,
                supported: schema::schema_version(),
            }),
            Err(other) => Err(PostgresOpenError::Database(
                other.into_storage().to_string(),
            )),
        }
    }
}

fn account_from_row(row: &tokio_postgres::Row) -> PgResult<AccountRecord> {
    Ok(AccountRecord {
        id: col(row, 0)?,
        username: col(row, 1)?,
        password_hash: col(row, 2)?,
        totp_secret: zeroize::Zeroizing::new(col(row, 3)?),
        last_totp_step: col(row, 4)?,
        active: col(row, 5)?,
        bot: col(row, 6)?,
    })
}

const ACCOUNT_COLUMNS: &str =
    "id, username, password_hash, totp_secret, last_totp_step, active, bot";

fn device_from_row(row: &tokio_postgres::Row) -> PgResult<DeviceRecord> {
    Ok(DeviceRecord {
        id: net_id(col(row, 0)?),
        account_id: col(row, 1)?,
        public_key: col(row, 2)?,
        name: col(row, 3)?,
        created_at_ms: net_id(col(row, 4)?),
        last_login_ms: net_id(col(row, 5)?),
        removed: col(row, 6)?,
    })
}

const DEVICE_COLUMNS: &str =
    "id, account_id, public_key, name, created_at_ms, last_login_ms, removed";

async fn delete_device_data(tx: &Tx<'_, '_>, device_id: i64) -> PgResult<()> {
    for sql in [
        "DELETE FROM device_keys WHERE device_id = $1",
        "DELETE FROM one_time_prekeys WHERE device_id = $1",
        "DELETE FROM kem_prekeys WHERE device_id = $1",
        "DELETE FROM envelopes WHERE device_id = $1",
        "UPDATE devices SET removed = TRUE, public_key = ''::bytea, name = '', queue_len = 0 \
         WHERE id = $1",
    ] {
        tx.execute(sql, &[&device_id]).await?;
    }
    Ok(())
}

async fn stock<C: tokio_postgres::GenericClient + db::OnConnection + Sync>(
    tx: &Db<'_, C>,
    device_id: i64,
) -> PgResult<PrekeyStock> {
    let row = tx
        .query_one(
            "SELECT (SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = $1), \
             (SELECT COUNT(*) FROM kem_prekeys WHERE device_id = $1), \
             (SELECT signed_prekey_id FROM device_keys WHERE device_id = $1)",
            &[&device_id],
        )
        .await?;
    let signed: Option<i64> = col(&row, 2)?;
    Ok(PrekeyStock {
        one_time: count(col(&row, 0)?),
        kem: count(col(&row, 1)?),
        signed_prekey_id: signed.map_or(0, key_id),
    })
}

async fn take_bundle(tx: &Tx<'_, '_>, device_id: i64) -> PgResult<Option<BundleRecord>> {
    let Some(keys) = tx
        .query_opt(
            "SELECT k.identity_key, k.signed_prekey_id, k.signed_prekey, k.signed_prekey_signature, \
             k.last_resort_kem_id, k.last_resort_kem, k.last_resort_kem_signature \
             FROM device_keys k JOIN devices d ON d.id = k.device_id \
             WHERE k.device_id = $1 AND NOT d.removed",
            &[&device_id],
        )
        .await?
    else {
        return Ok(None);
    };
    // The oldest key nobody else is taking right now is locked, deleted and
    // returned in one statement: concurrent fetches on any node each get a
    // different key.
    let one_time_prekey = tx
        .query_opt(
            "DELETE FROM one_time_prekeys WHERE (device_id, id) IN \
             (SELECT device_id, id FROM one_time_prekeys WHERE device_id = $1 \
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, public_key",
            &[&device_id],
        )
        .await?
        .map(|r| {
            Ok::<_, PgError>(OneTimeKey {
                id: key_id(col(&r, 0)?),
                public_key: col(&r, 1)?,
            })
        })
        .transpose()?;
    let one_time_kem = tx
        .query_opt(
            "DELETE FROM kem_prekeys WHERE (device_id, id) IN \
             (SELECT device_id, id FROM kem_prekeys WHERE device_id = $1 \
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, public_key, signature",
            &[&device_id],
        )
        .await?
        .map(|r| {
            Ok::<_, PgError>(SignedKey {
                id: key_id(col(&r, 0)?),
                public_key: col(&r, 1)?,
                signature: col(&r, 2)?,
            })
        })
        .transpose()?;
    let last_resort: (Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>) =
        (col(&keys, 4)?, col(&keys, 5)?, col(&keys, 6)?);
    let kem_prekey = match (one_time_kem, last_resort) {
        (Some(key), _) => Some((key, false)),
        (None, (Some(id), Some(public_key), Some(signature))) => Some((
            SignedKey {
                id: key_id(id),
                public_key,
                signature,
            },
            true,
        )),
        _ => None,
    };
    Ok(Some(BundleRecord {
        device_id: net_id(device_id),
        identity_key: col(&keys, 0)?,
        signed_prekey: SignedKey {
            id: key_id(col(&keys, 1)?),
            public_key: col(&keys, 2)?,
            signature: col(&keys, 3)?,
        },
        one_time_prekey,
        kem_prekey,
        stock: stock(tx, device_id).await?,
    }))
}

/// Locks the rows of `devices` (in id order: concurrent senders never
/// deadlock) and returns `(id, removed)` for those that exist.
pub(crate) async fn lock_devices(
    tx: &Tx<'_, '_>,
    devices: &[i64],
) -> PgResult<std::collections::HashMap<i64, bool>> {
    let rows = tx
        .query(
            "SELECT id, removed FROM devices WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&devices],
        )
        .await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
}

/// Devices among `devices` whose queue has no room for one more envelope
/// of this send, by the rule of [`crate::queue_caps`]: the row's
/// `queue_len`, and only where it says so, the sender's unexpired share
/// (devices of the sender's own account are exempt from the share). The
/// caller holds the device rows' locks.
pub(crate) async fn full_queues(
    tx: &Tx<'_, '_>,
    devices: &[i64],
    meta: &SendMeta<'_>,
) -> PgResult<Vec<u64>> {
    let caps = meta.caps();
    let rows = tx
        .query(
            "SELECT d.id, d.queue_len, COALESCE(d.account_id = s.account_id, FALSE) \
             FROM devices d LEFT JOIN devices s ON s.id = $2 WHERE d.id = ANY($1)",
            &[&devices, &sql_id(meta.sender_device_id)],
        )
        .await?;
    let mut full = std::collections::HashSet::new();
    let mut ask = Vec::new();
    for r in &rows {
        let device: i64 = col(r, 0)?;
        match room_by_length(count(col(r, 1)?), caps) {
            Room::Yes => {}
            Room::No => {
                full.insert(device);
            }
            Room::DependsOnShare if col::<bool>(r, 2)? => {}
            Room::DependsOnShare => ask.push(device),
        }
    }
    if !ask.is_empty() {
        let rows = tx
            .query(
                "SELECT e.device_id, COUNT(*) FROM envelopes e WHERE e.device_id = ANY($1) \
                 AND e.sender_username = $3 AND e.expires_at_ms > $2 GROUP BY e.device_id",
                &[&ask, &sql_time(meta.now_ms), &meta.sender_username],
            )
            .await?;
        for r in &rows {
            if !room_by_share(false, count(col(r, 1)?), caps) {
                full.insert(col::<i64>(r, 0)?);
            }
        }
    }
    Ok(devices
        .iter()
        .filter(|d| full.contains(d))
        .map(|d| net_id(*d))
        .collect())
}

#[async_trait::async_trait]
impl Storage for PostgresStorage {
    async fn create_account(&self, account: &NewAccount<'_>) -> StorageResult<i64> {
        with_tx!(self, |tx| async {
            let Some(row) = tx
                .query_opt(
                    "INSERT INTO accounts (username, password_hash, totp_secret, created_at_ms, bot) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING RETURNING id",
                    &[
                        &account.username,
                        &account.password_hash,
                        &account.totp_secret,
                        &sql_time(account.now_ms),
                        &account.bot,
                    ],
                )
                .await?
            else {
                return Err(StorageError::UsernameTaken.into());
            };
            let id: i64 = col(&row, 0)?;
            for hash in account.recovery_code_hashes {
                tx.execute(
                    "INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&id, &hash.as_slice()],
                )
                .await?;
            }
            Ok(id)
        })
    }

    async fn account_by_username(&self, username: &str) -> StorageResult<Option<AccountRecord>> {
        with_client!(self, |tx| async {
            tx.query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = $1"),
                &[&username],
            )
            .await?
            .as_ref()
            .map(account_from_row)
            .transpose()
        })
    }

    async fn account_by_id(&self, account_id: i64) -> StorageResult<Option<AccountRecord>> {
        with_client!(self, |tx| async {
            tx.query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
                &[&account_id],
            )
            .await?
            .as_ref()
            .map(account_from_row)
            .transpose()
        })
    }

    async fn consume_totp_step(&self, account_id: i64, step: i64) -> StorageResult<bool> {
        // The row lock makes a second node's UPDATE wait and then re-check
        // `last_totp_step < step` against the committed value: one winner.
        with_client!(self, |tx| async {
            let changed = tx
                .execute(
                    "UPDATE accounts SET last_totp_step = $2 WHERE id = $1 AND last_totp_step < $2",
                    &[&account_id, &step],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    async fn activate_account(&self, account_id: i64) -> StorageResult<()> {
        with_client!(self, |tx| async {
            tx.execute(
                "UPDATE accounts SET active = TRUE WHERE id = $1",
                &[&account_id],
            )
            .await?;
            Ok(())
        })
    }

    async fn consume_recovery_code(
        &self,
        account_id: i64,
        code_hash: &[u8; 32],
    ) -> StorageResult<bool> {
        with_client!(self, |tx| async {
            let changed = tx
                .execute(
                    "DELETE FROM recovery_codes WHERE account_id = $1 AND code_hash = $2",
                    &[&account_id, &code_hash.as_slice()],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    async fn set_password_hash(&self, account_id: i64, password_hash: &str) -> StorageResult<()> {
        with_client!(self, |tx| async {
            tx.execute(
                "UPDATE accounts SET password_hash = $2 WHERE id = $1",
                &[&account_id, &password_hash],
            )
            .await?;
            Ok(())
        })
    }

    async fn delete_account(&self, account_id: i64) -> StorageResult<Vec<u64>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT id FROM devices WHERE account_id = $1 AND NOT removed ORDER BY id",
                    &[&account_id],
                )
                .await?;
            let ids = rows
                .iter()
                .map(|r| col::<i64>(r, 0))
                .collect::<PgResult<Vec<_>>>()?;
            for id in &ids {
                delete_device_data(tx, *id).await?;
            }
            tx.execute("DELETE FROM accounts WHERE id = $1", &[&account_id])
                .await?;
            // Its attachments expire now: unknown to every request from
            // here on, and the sweeper deletes their rows and files.
            tx.execute(
                "UPDATE attachments SET expires_at_ms = 0 WHERE account_id = $1",
                &[&account_id],
            )
            .await?;
            // Its group memberships go with it; groups left empty go too.
            let groups = tx
                .query(
                    "DELETE FROM group_members WHERE account_id = $1 RETURNING group_id",
                    &[&account_id],
                )
                .await?
                .iter()
                .map(|r| col::<Vec<u8>>(r, 0))
                .collect::<PgResult<Vec<_>>>()?;
            tx.execute(
                "DELETE FROM chat_groups g WHERE g.id = ANY($1) AND NOT EXISTS \
                 (SELECT 1 FROM group_members m WHERE m.group_id = g.id)",
                &[&groups],
            )
            .await?;
            Ok(ids.into_iter().map(net_id).collect())
        })
    }

    async fn create_device(
        &self,
        account_id: i64,
        public_key: &[u8],
        name: &str,
        now_ms: u64,
    ) -> StorageResult<u64> {
        with_client!(self, |tx| async {
            let row = tx
                .query_one(
                    "INSERT INTO devices (account_id, public_key, name, created_at_ms) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&account_id, &public_key, &name, &sql_time(now_ms)],
                )
                .await?;
            Ok(net_id(col(&row, 0)?))
        })
    }

    async fn device(&self, device_id: u64) -> StorageResult<Option<DeviceRecord>> {
        with_client!(self, |tx| async {
            tx.query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"),
                &[&sql_id(device_id)],
            )
            .await?
            .as_ref()
            .map(device_from_row)
            .transpose()
        })
    }

    async fn account_devices(&self, account_id: i64) -> StorageResult<Vec<DeviceRecord>> {
        with_client!(self, |tx| async {
            tx.query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE account_id = $1 AND NOT removed ORDER BY id"
                ),
                &[&account_id],
            )
            .await?
            .iter()
            .map(device_from_row)
            .collect()
        })
    }

    async fn record_login(&self, device_id: u64, now_ms: u64) -> StorageResult<()> {
        with_client!(self, |tx| async {
            tx.execute(
                "UPDATE devices SET last_login_ms = $2 WHERE id = $1",
                &[&sql_id(device_id), &sql_time(now_ms)],
            )
            .await?;
            Ok(())
        })
    }

    async fn remove_device(&self, account_id: i64, device_id: u64) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            let row = tx
                .query_opt(
                    "SELECT account_id, removed FROM devices WHERE id = $1 FOR UPDATE",
                    &[&sql_id(device_id)],
                )
                .await?;
            let state: Option<(i64, bool)> = row
                .map(|r| Ok::<_, PgError>((col(&r, 0)?, col(&r, 1)?)))
                .transpose()?;
            check_removable(device_id, account_id, state)?;
            delete_device_data(tx, sql_id(device_id)).await
        })
    }

    async fn upload_prekeys_capped(
        &self,
        device_id: u64,
        upload: &PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StorageResult<()> {
        let device = sql_id(device_id);
        with_tx!(self, |tx| async {
            let has_keys = tx
                .query_opt(
                    "SELECT 1 FROM device_keys WHERE device_id = $1 FOR UPDATE",
                    &[&device],
                )
                .await?
                .is_some();
            if has_keys {
                if let Some(identity) = &upload.identity_key {
                    tx.execute(
                        "UPDATE device_keys SET identity_key = $2 WHERE device_id = $1",
                        &[&device, identity],
                    )
                    .await?;
                }
                if let Some(spk) = &upload.signed_prekey {
                    tx.execute(
                        "UPDATE device_keys SET signed_prekey_id = $2, signed_prekey = $3, \
                         signed_prekey_signature = $4 WHERE device_id = $1",
                        &[&device, &i64::from(spk.id), &spk.public_key, &spk.signature],
                    )
                    .await?;
                }
            } else {
                let (identity, spk) = first_keys(upload)?;
                // A concurrent first upload of the same device: the later one wins.
                tx.execute(
                    "INSERT INTO device_keys (device_id, identity_key, signed_prekey_id, signed_prekey, \
                     signed_prekey_signature) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (device_id) DO UPDATE SET identity_key = EXCLUDED.identity_key, \
                     signed_prekey_id = EXCLUDED.signed_prekey_id, signed_prekey = EXCLUDED.signed_prekey, \
                     signed_prekey_signature = EXCLUDED.signed_prekey_signature",
                    &[&device, &identity, &i64::from(spk.id), &spk.public_key, &spk.signature],
                )
                .await?;
            }
            if let Some(kem) = &upload.last_resort_kem_prekey {
                tx.execute(
                    "UPDATE device_keys SET last_resort_kem_id = $2, last_resort_kem = $3, \
                     last_resort_kem_signature = $4 WHERE device_id = $1",
                    &[&device, &i64::from(kem.id), &kem.public_key, &kem.signature],
                )
                .await?;
            }
            for key in &upload.one_time_prekeys {
                tx.execute(
                    "INSERT INTO one_time_prekeys (device_id, id, public_key) VALUES ($1, $2, $3) \
                     ON CONFLICT (device_id, id) DO UPDATE SET public_key = EXCLUDED.public_key",
                    &[&device, &i64::from(key.id), &key.public_key],
                )
                .await?;
            }
            for key in &upload.kem_prekeys {
                tx.execute(
                    "INSERT INTO kem_prekeys (device_id, id, public_key, signature) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (device_id, id) DO UPDATE SET public_key = EXCLUDED.public_key, \
                     signature = EXCLUDED.signature",
                    &[&device, &i64::from(key.id), &key.public_key, &key.signature],
                )
                .await?;
            }
            // Over the cap: the transaction is rolled back, nothing is stored.
            // (The device_keys row is locked above, so concurrent uploads of
            // one device are counted one after the other.)
            if adds_one_time_keys(upload) {
                check_stock(stock(tx, device).await?, caps)?;
            }
            Ok(())
        })
    }

    async fn take_bundles(&self, device_ids: &[u64]) -> StorageResult<Vec<BundleRecord>> {
        with_tx!(self, |tx| async {
            let mut bundles = Vec::with_capacity(device_ids.len());
            for id in device_ids {
                if let Some(bundle) = take_bundle(tx, sql_id(*id)).await? {
                    bundles.push(bundle);
                }
            }
            Ok(bundles)
        })
    }

    async fn prekey_stock(&self, device_id: u64) -> StorageResult<PrekeyStock> {
        with_client!(self, |tx| stock(tx, sql_id(device_id)))
    }

    async fn enqueue(
        &self,
        meta: &SendMeta<'_>,
        envelopes: &[OutgoingEnvelope],
    ) -> StorageResult<Vec<u64>> {
        self.writer
            .enqueue(OwnedSendMeta::from(meta), envelopes.to_vec())
            .await
    }

    async fn fetch_envelopes(
        &self,
        device_id: u64,
        after: u64,
        page: FetchPage,
    ) -> StorageResult<(Vec<StoredEnvelope>, bool)> {
        with_tx!(self, |tx| async {
            // A portal reads the queue in small chunks, so a large queue is
            // never loaded whole: the loop stops at the limit or the budget.
            let portal = tx
                .bind(
                    "SELECT e.id, e.device_id, e.sender_username, e.sender_device_id, \
                     e.server_timestamp_ms, COALESCE(g.ciphertext, e.ciphertext), g.group_id \
                     FROM envelopes e LEFT JOIN group_messages g ON g.id = e.group_message_id \
                     WHERE e.device_id = $1 AND e.id > $2 AND e.expires_at_ms > $3 ORDER BY e.id",
                    &[&sql_id(device_id), &sql_id(after), &sql_time(page.now_ms)],
                )
                .await?;
            let mut out = Vec::new();
            let mut used = 0usize;
            loop {
                let rows = tx.query_portal(&portal, FETCH_CHUNK).await?;
                if rows.is_empty() {
                    return Ok((out, false));
                }
                for r in &rows {
                    let ciphertext: Vec<u8> = col(r, 5)?;
                    if !page.admit(out.len(), &mut used, ciphertext.len()) {
                        return Ok((out, true));
                    }
                    out.push(StoredEnvelope {
                        id: net_id(col(r, 0)?),
                        device_id: net_id(col(r, 1)?),
                        sender_username: col(r, 2)?,
                        sender_device_id: net_id(col(r, 3)?),
                        server_timestamp_ms: net_id(col(r, 4)?),
                        ciphertext: bytes::Bytes::from(ciphertext),
                        group_id: col(r, 6)?,
                    });
                }
            }
        })
    }

    async fn ack_envelopes(&self, device_id: u64, ids: &[u64]) -> StorageResult<u32> {
        self.writer.ack(device_id, ids.to_vec()).await
    }

    async fn queue_len(&self, device_id: u64, now_ms: u64) -> StorageResult<u32> {
        with_client!(self, |tx| async {
            let row = tx
                .query_one(
                    "SELECT COUNT(*) FROM envelopes WHERE device_id = $1 AND expires_at_ms > $2",
                    &[&sql_id(device_id), &sql_time(now_ms)],
                )
                .await?;
            Ok(count(col(&row, 0)?))
        })
    }

    async fn purge_expired(&self, now_ms: u64) -> StorageResult<u64> {
        with_tx!(self, |tx| async {
            // The devices first, in id order, as a message batch locks them
            // (hot_writes.rs) before it deletes envelopes: deleting first
            // and then updating the devices took the two kinds of lock in
            // the opposite order, and a batch acknowledging on the same
            // device deadlocked with the sweep (a 1 s stall until
            // PostgreSQL broke it).
            tx.query(
                "SELECT id FROM devices WHERE id IN \
                 (SELECT device_id FROM envelopes WHERE expires_at_ms <= $1) \
                 ORDER BY id FOR UPDATE",
                &[&sql_time(now_ms)],
            )
            .await?;
            // One statement: each queue length drops by exactly what the
            // DELETE removed from it (counting in a separate statement could
            // miss envelopes committed in between).
            let rows = tx
                .query(
                    "WITH gone AS (DELETE FROM envelopes WHERE expires_at_ms <= $1 \
                     RETURNING device_id), \
                     n AS (SELECT device_id, COUNT(*) AS n FROM gone GROUP BY device_id) \
                     UPDATE devices d SET queue_len = GREATEST(d.queue_len - n.n, 0) FROM n \
                     WHERE d.id = n.device_id RETURNING n.n",
                    &[&sql_time(now_ms)],
                )
                .await?;
            let mut n = 0u64;
            for r in &rows {
                n = n.saturating_add(net_id(col(r, 0)?));
            }
            // Also collects group messages orphaned by device removal.
            tx.execute(
                "DELETE FROM group_messages g WHERE NOT EXISTS \
                 (SELECT 1 FROM envelopes e WHERE e.group_message_id = g.id)",
                &[],
            )
            .await?;
            Ok(n)
        })
    }

    async fn purge_unconfirmed_accounts(&self, created_before_ms: u64) -> StorageResult<u64> {
        with_tx!(self, |tx| async {
            tx.execute(
                "DELETE FROM recovery_codes WHERE account_id IN \
                 (SELECT id FROM accounts WHERE NOT active AND created_at_ms <= $1)",
                &[&sql_time(created_before_ms)],
            )
            .await?;
            let n = tx
                .execute(
                    "DELETE FROM accounts WHERE NOT active AND created_at_ms <= $1",
                    &[&sql_time(created_before_ms)],
                )
                .await?;
            Ok(n)
        })
    }

    async fn total_queued(&self, _now_ms: u64) -> StorageResult<u64> {
        with_client!(self, |tx| async {
            let row = tx
                .query_one(
                    "SELECT COALESCE(SUM(queue_len), 0)::bigint FROM devices",
                    &[],
                )
                .await?;
            Ok(net_id(col(&row, 0)?))
        })
    }
}
