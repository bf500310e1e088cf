//! The storage backend: where the store's rows live, as a trait, so the
//! store can be kept in SQLite (the default), in memory (tests, throwaway
//! bots), or in an application's own database.
//!
//! A backend is dumb: rows in, rows out. It knows nothing of encryption,
//! sessions, groups or message semantics; every rule (sealing and opening
//! with the right associated data, which session is used, how many are
//! kept, duplicate messages, history pages, the outbox order) is written
//! once above it, in the store's typed transaction. What a backend stores
//! is records made of plain *index fields* (usernames, conversation keys,
//! message and group ids, kinds, times, sequence numbers, device ids) and
//! *opaque blobs*. A blob is written and read back byte for byte; a
//! backend never looks inside one.
//!
//! # What a backend sees
//!
//! With a passphrase set ([`crate::StoreConfig::with_passphrase`]) every
//! secret or private value — identity seed, device key, prekeys, profile
//! keys, session states, our and our contacts' sender keys, group records
//! (members, name, keys), message bodies (texts, files, edits, reactions,
//! receipts), outbox payloads — is sealed (ChaCha20-Poly1305 under a key
//! derived from the passphrase, the associated data naming the row) before
//! it reaches the backend. A backend then holds those ciphertext blobs and,
//! in the clear:
//! - the index fields of the records: usernames, conversation keys,
//!   message, target and group ids, message kinds, times, positions,
//!   device ids, shown flags, receipt stages, whether an outbox row is
//!   announced;
//! - public keys: contacts' trusted and pending identity keys, each
//!   session's remote identity key and base key;
//! - how our sends ended (the server's time stamp, or the failure's kind
//!   and text) and, for files waiting for upload, the staging file name,
//!   the encrypted size and the server's upload id;
//! - plain meta values: the store's protection (flag, key-derivation salt
//!   and parameters, a sealed key check), the account profile (username,
//!   device id, server addresses, name and certificate fingerprint),
//!   contacts' bot flags and signed device lists, the server's sender
//!   certificate and key, and progress flags.
//!
//! Without a passphrase the blobs are the values themselves behind a
//! one-byte prefix.
//!
//! What a backend must keep: a record's index fields and blobs exactly; the
//! sequence numbers it assigns ([`BackendTx::insert_message`],
//! [`BackendTx::push_outbox`]) growing and never reused; and transactions
//! atomic: what a [`BackendTx`] changed is visible to later transactions
//! only after [`BackendTx::commit`], and a transaction dropped without
//! commit changes nothing. The store runs one transaction at a time per
//! backend. Lists come back in any order unless the method says otherwise.
//!
//! The records are `#[non_exhaustive]` (fields may be added): a backend
//! outside this crate builds one from [`Default::default`] and sets its
//! fields. Errors are [`StoreError::Database`] wrapping the backend's own
//! ([`crate::DatabaseError::new`]).
//!
//! Not owned here: the rules (rows.rs, groups.rs, uploads.rs), the
//! built-in backends (sqlite/, memory.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::StoreError;

/// A place the store's rows live. See the [module documentation](self)
/// for what it is given and what it must keep.
///
/// An implementation for an application's own database opens a
/// transaction in [`Backend::begin`] and maps each [`BackendTx`] method to
/// a read or write of its tables. [`crate::store::MemoryBackend`] is a
/// complete example in plain Rust collections.
pub trait Backend: Send {
    /// Starts a transaction. The store runs one at a time.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the backend cannot start one (its
    /// engine failed): the operation that needed it fails with that
    /// error, and may be retried.
    fn begin(&mut self) -> Result<Box<dyn BackendTx + '_>, StoreError>;
}

/// One transaction on a [`Backend`]: reads see the writes made before them
/// in the same transaction; the writes become durable together at
/// [`BackendTx::commit`], and are undone when the transaction is dropped
/// without it.
///
/// Every method fails with [`StoreError::Database`] (wrapping the
/// backend's own error, see [`crate::DatabaseError::new`]) when the
/// backend's engine fails; the store then drops the transaction, so
/// nothing of it stays.
pub trait BackendTx: Send {
    /// Makes every write of this transaction durable, at once.
    ///
    /// # Errors
    /// [`StoreError::Database`] when it cannot: then nothing of the
    /// transaction stays.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    // ---- meta: small named values ----

    /// The meta value named `key`.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets (inserts or replaces) the meta value named `key`.
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    // ---- contacts ----

    /// The contact named `username`.
    fn contact(&self, username: &str) -> Result<Option<ContactRecord>, StoreError>;
    /// Every contact.
    fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError>;
    /// Inserts or replaces the contact `record.username`.
    fn put_contact(&mut self, record: &ContactRecord) -> Result<(), StoreError>;

    // ---- sessions ----

    /// The sessions with `username`'s devices: with device `device_id`
    /// only when it is given.
    fn sessions(
        &self,
        username: &str,
        device_id: Option<u64>,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// The highest [`SessionRecord::used_seq`] stored, 0 when there is no
    /// session.
    fn last_session_use(&self) -> Result<u64, StoreError>;
    /// Inserts or replaces the session keyed by (`username`, `device_id`,
    /// `base_key`).
    fn put_session(&mut self, record: &SessionRecord) -> Result<(), StoreError>;
    /// Removes the session keyed by (`username`, `device_id`, `base_key`),
    /// if there is one.
    fn delete_session(
        &mut self,
        username: &str,
        device_id: u64,
        base_key: &[u8],
    ) -> Result<(), StoreError>;

    // ---- messages ----

    /// Inserts a message, ignoring `record.seq`, unless one with the same
    /// (`author`, `message_id`) is stored: then nothing changes and the
    /// answer is `None`. Otherwise the answer is the sequence number given
    /// to it: greater than every one given before, never reused.
    fn insert_message(&mut self, record: &MessageRecord) -> Result<Option<u64>, StoreError>;
    /// The message (`author`, `message_id`).
    fn message(&self, author: &str, message_id: &[u8])
    -> Result<Option<MessageRecord>, StoreError>;
    /// The messages with this `message_id`, of any author.
    fn messages_with_id(&self, message_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError>;
    /// The messages of `author` whose `message_id` or `target_id` is `id`.
    fn messages_about(&self, author: &str, id: &[u8]) -> Result<Vec<MessageRecord>, StoreError>;
    /// The messages of any author whose `target_id` is `target_id`.
    fn messages_targeting(&self, target_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError>;
    /// The messages of this `kind`.
    fn messages_of_kind(&self, kind: &str) -> Result<Vec<MessageRecord>, StoreError>;
    /// History: up to `limit` messages of `conversation` whose kind is one
    /// of [`HISTORY_KINDS`] and whose `seq` is below `before`, **the
    /// newest first** (`seq` descending).
    fn history_before(
        &self,
        conversation: &str,
        before: u64,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Up to `limit` messages not shown (`shown` false) whose `seq` is
    /// above `after`, **in `seq` order**.
    fn unshown(&self, after: u64, limit: u32) -> Result<Vec<MessageRecord>, StoreError>;
    /// Sets the `shown` flag of the message `seq` (none: nothing happens).
    fn set_message_shown(&mut self, seq: u64, shown: bool) -> Result<(), StoreError>;
    /// Sets the `author_device` of the message `seq`.
    fn set_message_author_device(&mut self, seq: u64, device_id: u64) -> Result<(), StoreError>;
    /// Replaces the `body` of the message `seq`.
    fn set_message_body(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError>;

    // ---- processed envelopes ----

    /// Whether the envelope `envelope_id` is recorded.
    fn envelope_processed(&self, envelope_id: u64) -> Result<bool, StoreError>;
    /// Records the envelope `envelope_id` (the store records one once).
    fn insert_processed_envelope(
        &mut self,
        envelope_id: u64,
        processed_ms: u64,
    ) -> Result<(), StoreError>;
    /// Forgets the envelopes recorded before `before_ms`.
    fn prune_processed_envelopes(&mut self, before_ms: u64) -> Result<(), StoreError>;

    // ---- outbox ----

    /// Queues a send, ignoring `record.seq`, and returns the sequence
    /// number given to it: greater than every one given before, never
    /// reused.
    fn push_outbox(&mut self, record: &OutboxRecord) -> Result<u64, StoreError>;
    /// Every queued send.
    fn outbox(&self) -> Result<Vec<OutboxRecord>, StoreError>;
    /// The queued send `seq`.
    fn outbox_entry(&self, seq: u64) -> Result<Option<OutboxRecord>, StoreError>;
    /// Whether a queued send has this `message_id`.
    fn outbox_has_message(&self, message_id: &[u8]) -> Result<bool, StoreError>;
    /// How many sends are queued.
    fn outbox_len(&self) -> Result<u64, StoreError>;
    /// Replaces the `payload` of the queued send `seq`.
    fn set_outbox_payload(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError>;
    /// Removes the queued send `seq`, if it is there.
    fn delete_outbox(&mut self, seq: u64) -> Result<(), StoreError>;

    // ---- receipts for our own messages ----

    /// The receipts for message `message_id`, one per reader.
    fn receipts(&self, message_id: &[u8]) -> Result<Vec<ReceiptRecord>, StoreError>;
    /// Inserts or replaces the receipt keyed by (`message_id`, `reader`).
    fn put_receipt(&mut self, record: &ReceiptRecord) -> Result<(), StoreError>;

    // ---- how our sends ended ----

    /// How the send of `message_id` ended.
    fn send_outcome(&self, message_id: &[u8]) -> Result<Option<SendOutcomeRecord>, StoreError>;
    /// Inserts or replaces the outcome keyed by `message_id`.
    fn put_send_outcome(&mut self, record: &SendOutcomeRecord) -> Result<(), StoreError>;

    // ---- groups ----

    /// The sealed record of group `group_id`.
    fn group(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every group.
    fn groups(&self) -> Result<Vec<GroupEntry>, StoreError>;
    /// Inserts or replaces the sealed record of group `group_id`.
    fn put_group(&mut self, group_id: &[u8], record: &[u8]) -> Result<(), StoreError>;
    /// Our sealed sender-key state for group `group_id`.
    fn outbound_key(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Inserts or replaces our sealed sender-key state for `group_id`.
    fn put_outbound_key(&mut self, group_id: &[u8], state: &[u8]) -> Result<(), StoreError>;
    /// Removes our sender-key state for `group_id`.
    fn delete_outbound_key(&mut self, group_id: &[u8]) -> Result<(), StoreError>;
    /// The devices our sender key for `group_id` went to.
    fn shared_keys(&self, group_id: &[u8]) -> Result<Vec<SharedKeyRecord>, StoreError>;
    /// Inserts or replaces the record keyed by (`group_id`, `username`,
    /// `device_id`).
    fn put_shared_key(&mut self, record: &SharedKeyRecord) -> Result<(), StoreError>;
    /// Removes every record of `group_id` of [`BackendTx::shared_keys`].
    fn clear_shared_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError>;
    /// The sealed sender-key record of (`group_id`, `username`, `device_id`).
    fn inbound_key(
        &self,
        group_id: &[u8],
        username: &str,
        device_id: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Inserts or replaces the record keyed by (`group_id`, `username`,
    /// `device_id`).
    fn put_inbound_key(&mut self, record: &InboundKeyRecord) -> Result<(), StoreError>;
    /// Removes every inbound sender-key record of `group_id`.
    fn delete_inbound_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError>;

    // ---- files queued for upload ----

    /// The pending upload of file message `message_id`.
    fn upload(&self, message_id: &[u8]) -> Result<Option<UploadRecord>, StoreError>;
    /// Every pending upload.
    fn uploads(&self) -> Result<Vec<UploadRecord>, StoreError>;
    /// Inserts a pending upload. A second record with the same
    /// `message_id` or `staging` name is refused ([`StoreError::Database`]).
    fn insert_upload(&mut self, record: &UploadRecord) -> Result<(), StoreError>;
    /// Sets or clears the `attachment_id` of the upload of `message_id`.
    fn set_upload_attachment_id(
        &mut self,
        message_id: &[u8],
        attachment_id: Option<&[u8]>,
    ) -> Result<(), StoreError>;
    /// Removes the upload of `message_id`, if there is one.
    fn delete_upload(&mut self, message_id: &[u8]) -> Result<(), StoreError>;
}

/// The message kinds that make up a conversation's history (texts and
/// files), the kinds [`BackendTx::history_before`] returns.
pub const HISTORY_KINDS: [&str; 2] = ["text", "attachment"];

/// A contact and the identity key trusted for it.
///
/// Records are `#[non_exhaustive]`: a backend outside this crate builds one
/// from [`Default::default`] and sets its fields.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactRecord {
    /// The contact's username (the key).
    pub username: String,
    /// The trusted identity key (a public key: 32 bytes).
    pub identity_key: Vec<u8>,
    /// A different identity key seen since, not acknowledged yet.
    pub pending_identity: Option<Vec<u8>>,
    /// When the contact's device list was last fetched (ms since the epoch).
    pub devices_checked_ms: u64,
}

/// A pairwise session with one remote device. The key is (`username`,
/// `device_id`, `base_key`).
#[non_exhaustive]
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SessionRecord {
    /// The remote device's account.
    pub username: String,
    /// The remote device.
    pub device_id: u64,
    /// Which handshake made the session (a public value).
    pub base_key: Vec<u8>,
    /// The remote identity key of the session (a public key).
    pub remote_identity: Vec<u8>,
    /// The sealed session state.
    pub state: Vec<u8>,
    /// When the session was last chosen, as a number the store counts up.
    pub used_seq: u64,
}

/// A stored message of any kind (texts, files, edits, deletes, reactions,
/// receipts). The key is `seq`; (`author`, `message_id`) is unique.
#[non_exhaustive]
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageRecord {
    /// Position in the store, given by [`BackendTx::insert_message`].
    pub seq: u64,
    /// The conversation key (`u:<username>` or `g:<group id>`).
    pub conversation: String,
    /// The author's username.
    pub author: String,
    /// The message id (16 bytes).
    pub message_id: Vec<u8>,
    /// The message an edit, delete, reaction or receipt is about.
    pub target_id: Option<Vec<u8>>,
    /// Short kind name (`text`, `attachment`, `edit`, `delete`,
    /// `reaction`, `delivery_receipt`, `read_receipt`, …).
    pub kind: String,
    /// The sender's clock (ms).
    pub sent_at_ms: u64,
    /// Our clock when stored (ms).
    pub received_at_ms: u64,
    /// The sealed content.
    pub body: Vec<u8>,
    /// Whether the application has been shown it.
    pub shown: bool,
    /// The author's device that sent it (0 when not recorded).
    pub author_device: u64,
}

/// Where a message sits in history ([`BackendTx::history_before`]).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The message's [`MessageRecord::seq`].
    pub seq: u64,
    /// The author's username.
    pub author: String,
    /// The message id.
    pub message_id: Vec<u8>,
}

/// A queued send. The key is `seq`.
#[non_exhaustive]
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Queue position, given by [`BackendTx::push_outbox`].
    pub seq: u64,
    /// The destination's conversation key.
    pub destination: String,
    /// The queued message's id.
    pub message_id: Vec<u8>,
    /// The sealed content to send.
    pub payload: Vec<u8>,
    /// When it was queued (ms).
    pub created_ms: u64,
    /// Whether the application's own send (its fate is announced).
    pub announce: bool,
}

/// How far one reader got with one of our messages. The key is
/// (`message_id`, `reader`).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// Our message's id.
    pub message_id: Vec<u8>,
    /// The reader's username.
    pub reader: String,
    /// The stage reached (1 delivered, 2 read).
    pub stage: i64,
}

/// How one of our sends ended. The key is `message_id`.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOutcomeRecord {
    /// Our message's id.
    pub message_id: Vec<u8>,
    /// The server's time stamp, when it stored the message.
    pub server_timestamp_ms: Option<u64>,
    /// Why it was dropped: the reason's kind.
    pub failure_kind: Option<String>,
    /// Why it was dropped: the reason's text.
    pub failure: Option<String>,
}

/// A group's sealed record. The key is `group_id`.
#[non_exhaustive]
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GroupEntry {
    /// The group id.
    pub group_id: Vec<u8>,
    /// The sealed group record (members, name, keys).
    pub record: Vec<u8>,
}

/// One device our sender key for a group went to. The key is
/// (`group_id`, `username`, `device_id`).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedKeyRecord {
    /// The group id.
    pub group_id: Vec<u8>,
    /// The device's account.
    pub username: String,
    /// The device.
    pub device_id: u64,
    /// Which of our keys it got.
    pub key_id: u32,
}

/// The sender-key record of one member device of a group. The key is
/// (`group_id`, `username`, `device_id`).
#[non_exhaustive]
#[derive(Clone, Default, PartialEq, Eq)]
pub struct InboundKeyRecord {
    /// The group id.
    pub group_id: Vec<u8>,
    /// The member's username.
    pub username: String,
    /// The member's device.
    pub device_id: u64,
    /// The sealed sender-key record.
    pub state: Vec<u8>,
}

/// A file message waiting for its upload. The key is `message_id`;
/// `staging` is unique too.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadRecord {
    /// The file message's id.
    pub message_id: Vec<u8>,
    /// The staging copy's file name.
    pub staging: String,
    /// Size of the encrypted copy.
    pub ciphertext_len: u64,
    /// The server's id of the upload once it started.
    pub attachment_id: Option<Vec<u8>>,
}

/// Debug for records with blobs: the index fields and the blob sizes.
macro_rules! debug_with_blobs {
    ($ty:ident { $($field:ident),* } blobs { $($blob:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($blob), &format_args!("<{} bytes>", self.$blob.len())))*
                    .finish()
            }
        }
    };
}

debug_with_blobs!(SessionRecord { username, device_id, used_seq } blobs { state });
debug_with_blobs!(MessageRecord { seq, conversation, author, kind, sent_at_ms, received_at_ms, shown, author_device } blobs { body });
debug_with_blobs!(OutboxRecord { seq, destination, created_ms, announce } blobs { payload });
debug_with_blobs!(GroupEntry { group_id } blobs { record });
debug_with_blobs!(InboundKeyRecord { username, device_id } blobs { state });

/// A backend the application supplied ([`crate::StoreConfig::from_backend`]):
/// shared by the clones of its configuration, run by one store at a time.
#[derive(Clone)]
pub(crate) struct SuppliedBackend(Arc<Supplied>);

struct Supplied {
    backend: Mutex<Box<dyn Backend>>,
    in_use: AtomicBool,
}

impl SuppliedBackend {
    /// Wraps `backend`.
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        Self(Arc::new(Supplied {
            backend: Mutex::new(backend),
            in_use: AtomicBool::new(false),
        }))
    }

    /// The backend for one store, until the lease is dropped; `None` while
    /// another store has it.
    pub(crate) fn lease(&self) -> Option<BackendLease> {
        self.0
            .in_use
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| BackendLease(Arc::clone(&self.0)))
    }
}

/// A supplied backend held by one store.
pub(crate) struct BackendLease(Arc<Supplied>);

impl BackendLease {
    /// Runs `f` on the backend.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut dyn Backend) -> R) -> R {
        let mut backend = self
            .0
            .backend
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(backend.as_mut())
    }
}

impl Drop for BackendLease {
    fn drop(&mut self) {
        self.0.in_use.store(false, Ordering::Release);
    }
}
