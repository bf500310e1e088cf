//! Persistent state behind a [`Storage`] trait (SPEC.md §14 lists what it holds).
//!
//! One execution model: every method is async (`#[async_trait]`, so each
//! returns a boxed `Send` future and `Arc<dyn Storage>` stays a trait
//! object; a native `async fn` in a trait is not object safe), is one
//! atomic step (a transaction, or one job of a group commit), and is
//! awaited directly by the handlers. Where the work blocks is the
//! backend's business and never leaks out of it: [`sqlite::SqliteStorage`]
//! runs its queries off the async workers and hands its hot writes
//! (enqueue, acknowledge, group fan-out, login times) to its group-commit
//! writer thread, awaiting the commit; [`postgres::PostgresStorage`] runs
//! `tokio-postgres` on the caller's runtime, with its batching writer
//! tasks for enqueue and acknowledge. Either way a write resolves only once
//! it is durable. The trait only reads and writes rows: the rules live in
//! the domain modules and in pure functions both backends call
//! (`group_rules`, [`crate::queue_caps`]). [`sqlite::SqliteStorage`] is the
//! embedded default; [`postgres::PostgresStorage`] lets several server
//! nodes share one database (SPEC.md §18). [`open`] picks one from the
//! configuration.
//!
//! Not owned here: credential checks (auth/), limits and validation of
//! request fields (the handlers), and notifying connected devices (bus/).

pub mod admin;
pub mod analytics;
pub mod attachments;
pub mod device_lists;
mod device_rules;
mod group_flow;
mod group_rules;
pub mod groups;
pub mod postgres;
pub mod provisioning;
pub mod schema;
pub mod sealed;
pub mod sqlite;
pub mod suspension;
mod values;

pub use admin::AdminStorage;
pub use analytics::AnalyticsStorage;
pub use attachments::{AttachmentRecord, AttachmentStorage};
pub use device_lists::DeviceListStorage;
pub use groups::{
    FanOut, GroupCaps, GroupChange, GroupChangeOutcome, GroupFanOut, GroupRecord, GroupStorage,
};
pub use provisioning::{ProvisioningStorage, SlotRead};
pub use sealed::SealedStorage;
pub use suspension::SuspensionStorage;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The result of a submitted write, once it is durable (or failed).
pub type StorageFuture<T> = Pin<Box<dyn Future<Output = StorageResult<T>> + Send + 'static>>;

/// Errors of storage operations.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// The username is already registered.
    #[error("username already taken")]
    UsernameTaken,
    /// The device does not exist (or is not the caller's).
    #[error("unknown device {0}")]
    UnknownDevice(u64),
    /// The device was removed.
    #[error("device {0} was removed")]
    DeviceRemoved(u64),
    /// Recipient queues at their cap, or holding the sender's share of
    /// it; nothing was stored.
    #[error("queue full for {} device(s)", .0.len())]
    QueueFull(Vec<u64>),
    /// The device has never uploaded its identity and signed prekey.
    #[error("device has no prekeys")]
    NoPrekeys,
    /// No account with this username (or it is not active yet).
    #[error("unknown account")]
    UnknownAccount(String),
    /// No group with this id.
    #[error("unknown group")]
    UnknownGroup,
    /// A group with this id exists already.
    #[error("group id taken")]
    GroupExists,
    /// The actor (or a named user) is not a member.
    #[error("not a group member")]
    NotGroupMember,
    /// The actor is not an admin.
    #[error("not a group admin")]
    NotGroupAdmin,
    /// The expected version is not current; carries the current one.
    #[error("stale group version (current {0})")]
    StaleGroupVersion(u64),
    /// The change is not allowed as asked (see the text).
    #[error("invalid group change: {0}")]
    InvalidGroupChange(&'static str),
    /// No such (unexpired, owned) attachment.
    #[error("unknown attachment")]
    UnknownAttachment,
    /// The account's attachment quota would be exceeded.
    #[error("attachment quota exceeded")]
    QuotaExceeded,
    /// The account has created `max_groups_per_account` groups that still
    /// exist.
    #[error("too many groups created by this account")]
    TooManyGroups,
    /// The upload would leave more unused prekeys than the per-device cap;
    /// nothing was stored.
    #[error("prekey stock cap exceeded")]
    PrekeyStockFull,
    /// The database failed (I/O, corruption, a bug).
    #[error("database error: {0}")]
    Database(String),
}

/// Storage result.
pub type StorageResult<T> = Result<T, StorageError>;

/// An account row.
#[derive(Clone)]
pub struct AccountRecord {
    /// Internal id.
    pub id: i64,
    /// Unique username.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Raw TOTP secret (20 bytes).
    pub totp_secret: zeroize::Zeroizing<Vec<u8>>,
    /// Highest TOTP time step accepted so far (-1: none).
    pub last_totp_step: i64,
    /// Confirmed with a first TOTP code.
    pub active: bool,
    /// Registered as a bot account (clients show it).
    pub bot: bool,
}

impl fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A new account to insert.
pub struct NewAccount<'a> {
    /// Username.
    pub username: &'a str,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
    /// Raw TOTP secret.
    pub totp_secret: &'a [u8],
    /// SHA-256 hashes of the recovery codes.
    pub recovery_code_hashes: &'a [[u8; 32]],
    /// Creation time.
    pub now_ms: u64,
    /// A bot account.
    pub bot: bool,
}

/// A device row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub id: u64,
    /// Owning account.
    pub account_id: i64,
    /// Ed25519 public key (empty once removed).
    pub public_key: Vec<u8>,
    /// User-chosen name.
    pub name: String,
    /// Enrolment time.
    pub created_at_ms: u64,
    /// Last successful login (0: never).
    pub last_login_ms: u64,
    /// Removed devices keep their row so their id is never reused and their
    /// logins get a precise error.
    pub removed: bool,
}

/// A signed key (X25519 signed prekey or ML-KEM prekey).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKey {
    /// Client-chosen id.
    pub id: u32,
    /// Public key bytes.
    pub public_key: Vec<u8>,
    /// Signature by the identity key.
    pub signature: Vec<u8>,
}

/// An unsigned one-time prekey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimeKey {
    /// Client-chosen id.
    pub id: u32,
    /// Public key bytes.
    pub public_key: Vec<u8>,
}

/// A validated prekey upload.
#[derive(Clone, Debug, Default)]
pub struct PrekeyUpload {
    /// Identity key, when replaced.
    pub identity_key: Option<Vec<u8>>,
    /// Signed prekey, when replaced.
    pub signed_prekey: Option<SignedKey>,
    /// One-time prekeys to add.
    pub one_time_prekeys: Vec<OneTimeKey>,
    /// One-time KEM prekeys to add.
    pub kem_prekeys: Vec<SignedKey>,
    /// Last-resort KEM prekey, when replaced.
    pub last_resort_kem_prekey: Option<SignedKey>,
}

/// One device's bundle as handed out (the one-time keys are already deleted).
#[derive(Clone, Debug)]
pub struct BundleRecord {
    /// Device id.
    pub device_id: u64,
    /// Identity key.
    pub identity_key: Vec<u8>,
    /// Signed prekey.
    pub signed_prekey: SignedKey,
    /// One one-time prekey, if any was left.
    pub one_time_prekey: Option<OneTimeKey>,
    /// A KEM prekey and whether it is the last-resort one.
    pub kem_prekey: Option<(SignedKey, bool)>,
    /// Stock left after this hand-out.
    pub stock: PrekeyStock,
}

/// Unused prekeys of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrekeyStock {
    /// One-time X25519 prekeys left.
    pub one_time: u32,
    /// One-time KEM prekeys left.
    pub kem: u32,
    /// Current signed prekey id (0: none).
    pub signed_prekey_id: u32,
}

/// Most unused one-time prekeys a device may hold (SPEC.md §12.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrekeyCaps {
    /// One-time X25519 prekeys.
    pub one_time: u32,
    /// One-time KEM prekeys.
    pub kem: u32,
}

impl PrekeyCaps {
    /// No cap.
    pub const NONE: Self = Self {
        one_time: u32::MAX,
        kem: u32::MAX,
    };
}

/// An envelope to store for one recipient device (cloning shares the
/// ciphertext, which is reference-counted).
#[derive(Clone, Debug)]
pub struct OutgoingEnvelope {
    /// Recipient device.
    pub recipient_device_id: u64,
    /// Opaque ciphertext.
    pub ciphertext: bytes::Bytes,
}

/// Who sent a batch of envelopes and when.
pub struct SendMeta<'a> {
    /// Sender's username.
    pub sender_username: &'a str,
    /// Sender's device.
    pub sender_device_id: u64,
    /// Server time stamped on every envelope.
    pub now_ms: u64,
    /// Expiry time of the envelopes.
    pub expires_at_ms: u64,
    /// Queue cap per device.
    pub max_queue_len: u32,
    /// Envelopes this sender account may have in one device's queue.
    pub max_per_sender: u32,
}

/// [`SendMeta`] owning its strings, for a write that outlives the request's
/// borrow (it runs on another thread).
#[derive(Clone, Debug)]
pub struct OwnedSendMeta {
    /// Sender's username.
    pub sender_username: String,
    /// Sender's device.
    pub sender_device_id: u64,
    /// Server time stamped on every envelope.
    pub now_ms: u64,
    /// Expiry time of the envelopes.
    pub expires_at_ms: u64,
    /// Queue cap per device.
    pub max_queue_len: u32,
    /// Envelopes this sender account may have in one device's queue.
    pub max_per_sender: u32,
}

impl From<&SendMeta<'_>> for OwnedSendMeta {
    fn from(meta: &SendMeta<'_>) -> Self {
        Self {
            sender_username: meta.sender_username.to_owned(),
            sender_device_id: meta.sender_device_id,
            now_ms: meta.now_ms,
            expires_at_ms: meta.expires_at_ms,
            max_queue_len: meta.max_queue_len,
            max_per_sender: meta.max_per_sender,
        }
    }
}

impl SendMeta<'_> {
    /// The queue caps this send is checked against.
    pub fn caps(&self) -> crate::queue_caps::QueueCaps {
        crate::queue_caps::QueueCaps {
            max_queue_len: self.max_queue_len,
            max_per_sender: self.max_per_sender,
        }
    }
}

impl OwnedSendMeta {
    /// The borrowed form the storage methods take.
    pub fn borrowed(&self) -> SendMeta<'_> {
        SendMeta {
            sender_username: &self.sender_username,
            sender_device_id: self.sender_device_id,
            now_ms: self.now_ms,
            expires_at_ms: self.expires_at_ms,
            max_queue_len: self.max_queue_len,
            max_per_sender: self.max_per_sender,
        }
    }
}

/// Bounds of one fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchPage {
    /// Most envelopes.
    pub limit: u32,
    /// Byte budget (ciphertext plus `overhead` per envelope).
    pub max_bytes: usize,
    /// Bytes counted per envelope besides its ciphertext.
    pub overhead: usize,
    /// Current time: expired envelopes are skipped.
    pub now_ms: u64,
}

impl FetchPage {
    /// Whether the next envelope, with a ciphertext of `ciphertext_len`
    /// bytes, still goes on a page that holds `taken` envelopes of `used`
    /// bytes so far; when it does, `used` grows by its cost. The first
    /// envelope always goes, however large, so that a page is never empty
    /// while the queue is not; the page ends at `limit` envelopes.
    pub(crate) fn admit(&self, taken: usize, used: &mut usize, ciphertext_len: usize) -> bool {
        let cost = ciphertext_len.saturating_add(self.overhead);
        let full = u32::try_from(taken).unwrap_or(u32::MAX) >= self.limit;
        if full || (taken > 0 && used.saturating_add(cost) > self.max_bytes) {
            return false;
        }
        *used = used.saturating_add(cost);
        true
    }
}

/// A stored envelope.
#[derive(Clone)]
pub struct StoredEnvelope {
    /// Queue id (increasing in queue order).
    pub id: u64,
    /// Recipient device.
    pub device_id: u64,
    /// Sender's username.
    pub sender_username: String,
    /// Sender's device.
    pub sender_device_id: u64,
    /// Server timestamp.
    pub server_timestamp_ms: u64,
    /// Opaque ciphertext.
    pub ciphertext: bytes::Bytes,
    /// The group of a group message.
    pub group_id: Option<Vec<u8>>,
}

impl fmt::Debug for StoredEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print envelope bytes, only their size.
        f.debug_struct("StoredEnvelope")
            .field("id", &self.id)
            .field("device_id", &self.device_id)
            .field("sender_device_id", &self.sender_device_id)
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// The server's persistent state. Every method is atomic.
#[async_trait::async_trait]
pub trait Storage:
    GroupStorage
    + AttachmentStorage
    + ProvisioningStorage
    + SealedStorage
    + AdminStorage
    + AnalyticsStorage
    + SuspensionStorage
    + DeviceListStorage
    + Send
    + Sync
    + 'static
{
    /// Inserts an inactive account with its recovery code hashes.
    async fn create_account(&self, account: &NewAccount<'_>) -> StorageResult<i64>;
    /// Looks an account up by username.
    async fn account_by_username(&self, username: &str) -> StorageResult<Option<AccountRecord>>;
    /// Looks an account up by id.
    async fn account_by_id(&self, account_id: i64) -> StorageResult<Option<AccountRecord>>;
    /// Records `step` as used if it is newer than every step accepted before.
    /// Returns false (and changes nothing) for a replayed or older step.
    async fn consume_totp_step(&self, account_id: i64, step: i64) -> StorageResult<bool>;
    /// Marks the account active.
    async fn activate_account(&self, account_id: i64) -> StorageResult<()>;
    /// Deletes one unused recovery code; false when there was none with this hash.
    async fn consume_recovery_code(
        &self,
        account_id: i64,
        code_hash: &[u8; 32],
    ) -> StorageResult<bool>;
    /// Replaces the password hash.
    async fn set_password_hash(&self, account_id: i64, password_hash: &str) -> StorageResult<()>;
    /// Deletes the account, its recovery codes, keys and queues; its devices
    /// are marked removed and its attachments expire at once (the sweeper
    /// deletes their rows and files). Account ids are never reused.
    /// Returns the ids of devices that were active.
    async fn delete_account(&self, account_id: i64) -> StorageResult<Vec<u64>>;

    /// Adds a device and returns its new id (never reused).
    async fn create_device(
        &self,
        account_id: i64,
        public_key: &[u8],
        name: &str,
        now_ms: u64,
    ) -> StorageResult<u64>;
    /// Looks a device up (removed ones included).
    async fn device(&self, device_id: u64) -> StorageResult<Option<DeviceRecord>>;
    /// The account's devices that are not removed, by id.
    async fn account_devices(&self, account_id: i64) -> StorageResult<Vec<DeviceRecord>>;
    /// Records a successful login.
    async fn record_login(&self, device_id: u64, now_ms: u64) -> StorageResult<()>;
    /// Marks a device of this account removed and deletes its keys and queue.
    async fn remove_device(&self, account_id: i64, device_id: u64) -> StorageResult<()>;

    /// Applies a prekey upload for a device, all or nothing; refused with
    /// [`StorageError::PrekeyStockFull`] when the device would then hold
    /// more unused one-time (or one-time KEM) prekeys than `caps` allow.
    async fn upload_prekeys_capped(
        &self,
        device_id: u64,
        upload: &PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StorageResult<()>;
    /// [`Storage::upload_prekeys_capped`] without a cap.
    async fn upload_prekeys(&self, device_id: u64, upload: &PrekeyUpload) -> StorageResult<()> {
        self.upload_prekeys_capped(device_id, upload, PrekeyCaps::NONE)
            .await
    }
    /// Hands out one bundle per listed device that has keys, deleting the
    /// one-time keys it contains in the same transaction.
    async fn take_bundles(&self, device_ids: &[u64]) -> StorageResult<Vec<BundleRecord>>;
    /// The device's unused stock.
    async fn prekey_stock(&self, device_id: u64) -> StorageResult<PrekeyStock>;

    /// Stores every envelope or none, durably, and returns their ids in
    /// order. A queue holding `max_queue_len` envelopes (expired ones count
    /// until the sweep deletes them), or `max_per_sender` unexpired ones
    /// from this sender's username, is full.
    async fn enqueue(
        &self,
        meta: &SendMeta<'_>,
        envelopes: &[OutgoingEnvelope],
    ) -> StorageResult<Vec<u64>>;
    /// Unexpired envelopes of a device with id > `after`, oldest first: at
    /// most `limit`, and stopping before the sum of `ciphertext.len() +
    /// overhead` exceeds `max_bytes` (the first envelope is always included).
    /// The flag tells whether more envelopes follow.
    async fn fetch_envelopes(
        &self,
        device_id: u64,
        after: u64,
        page: FetchPage,
    ) -> StorageResult<(Vec<StoredEnvelope>, bool)>;
    /// Deletes the listed envelopes of this device; returns how many existed.
    async fn ack_envelopes(&self, device_id: u64, ids: &[u64]) -> StorageResult<u32>;
    /// Unexpired envelopes queued for a device.
    async fn queue_len(&self, device_id: u64, now_ms: u64) -> StorageResult<u32>;
    /// Deletes every envelope that expired (and group messages no envelope
    /// refers to any more); returns how many envelopes.
    async fn purge_expired(&self, now_ms: u64) -> StorageResult<u64>;

    /// Deletes the accounts never confirmed that were created at or before
    /// `created_before_ms`, with their recovery codes, so their usernames
    /// are free again (SPEC.md §13.1). An unconfirmed account owns nothing
    /// else: it cannot enrol a device. Returns how many went.
    async fn purge_unconfirmed_accounts(&self, created_before_ms: u64) -> StorageResult<u64>;
    /// Envelopes stored in all device queues (a metrics gauge; expired ones
    /// count until the sweep deletes them).
    async fn total_queued(&self, now_ms: u64) -> StorageResult<u64>;
}

/// Errors opening the configured storage.
#[derive(Debug, thiserror::Error)]
pub enum OpenStorageError {
    /// The SQLite file could not be opened.
    #[error(transparent)]
    Sqlite(#[from] sqlite::OpenError),
    /// PostgreSQL could not be reached or migrated.
    #[error(transparent)]
    Postgres(#[from] postgres::PostgresOpenError),
    /// The `storage` setting is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Opens the backend named by `config.storage`: the SQLite file in the data
/// directory by default, or the shared PostgreSQL database.
///
/// # Errors
/// [`OpenStorageError`].
pub async fn open(
    config: &crate::config::Config,
) -> Result<std::sync::Arc<dyn Storage>, OpenStorageError> {
    Ok(match config.storage_backend()? {
        crate::config::StorageBackend::Sqlite => {
            std::sync::Arc::new(sqlite::SqliteStorage::open(&config.database_path())?)
        }
        crate::config::StorageBackend::Postgres(url) => std::sync::Arc::new(
            postgres::PostgresStorage::open(
                url.expose(),
                usize::try_from(config.storage_pool_size).unwrap_or(postgres::DEFAULT_POOL_SIZE),
            )
            .await?,
        ),
    })
}

/// Rows the storage unit tests of both backends start from.
#[cfg(test)]
pub(crate) mod test_rows {
    use super::{NewAccount, Storage};

    /// Creates the account "alice" and `devices` devices of it (public keys
    /// 1, 2, …); returns the account id and the device ids.
    pub(crate) async fn alice_with_devices(storage: &dyn Storage, devices: u8) -> (i64, Vec<u64>) {
        let account = storage
            .create_account(&NewAccount {
                username: "alice",
                password_hash: "x",
                totp_secret: &[0u8; 20],
                recovery_code_hashes: &[],
                now_ms: 0,
                bot: false,
            })
            .await
            .unwrap();
        let mut ids = Vec::new();
        for n in 1..=devices {
            ids.push(
                storage
                    .create_device(account, &[n; 32], &format!("device {n}"), 0)
                    .await
                    .unwrap(),
            );
        }
        (account, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::FetchPage;

    #[test]
    fn a_page_ends_at_its_limit_or_budget_but_never_empty() {
        let page = FetchPage {
            limit: 2,
            max_bytes: 10,
            overhead: 1,
            now_ms: 0,
        };
        let mut used = 0;
        assert!(page.admit(0, &mut used, 50));
        assert_eq!(used, 51);
        assert!(!page.admit(1, &mut used, 0));
        let mut used = 0;
        assert!(page.admit(0, &mut used, 4));
        assert!(page.admit(1, &mut used, 4));
        assert_eq!(used, 10);
        assert!(!page.admit(2, &mut used, 0));
    }
}
