//! [`Account`]: one device of one account, opened from its local store.
//!
//! An account is created by enrolling this device ([`Account::enrol`]) and
//! reopened with [`Account::open`]. Sends are queued in the outbox and leave
//! when connected ([`Account::connect`] starts the background connection:
//! login, prekeys, sync of queued envelopes, outbox, pushes, reconnects).
//!
//! Every public method of [`Account`] is here or in a file of this folder
//! (groups.rs, files.rs, linking.rs, shown.rs), each handing over to the
//! feature module that holds the logic (groups/admin.rs, attachments/,
//! linking.rs, shown.rs). Only linking.rs names `Account` back, to enrol a
//! provisioned device through [`Account::enrol`].
//!
//! Not owned here: encryption per device (sessions.rs), the connection loop
//! (sync.rs), the SQL (store/), the state shared with the background task
//! (account_state.rs).

mod files;
mod groups;
mod linking;
mod shown;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::SigningKey;
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::fingerprint::SafetyNumber;
use microbot_protocol::MessageId;
use microbot_protocol::content::{Content, ReplyTo, TypingAction};
use microbot_protocol::transport::{
    DeleteAccountRequest, DeviceInfo, ErrorCode, PrekeyStatus, PrekeyStatusRequest,
    RemoveDeviceRequest, client_frame::Request, response,
};
use prost::Message as _;
use rand::Rng as _;
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

use crate::account_state::Inner;
use crate::auth::{self, SecondFactor};
use crate::config::{AccountConfig, ServerConfig, StoreConfig};
use crate::error::{
    AcknowledgeError, AuthError, OnlineError, OpenError, SendError, StoreError, TransportError,
};
use crate::events::{Conversation, Events};
use crate::messages::new_id;
use crate::messages::{self, MessageSnapshot};
use crate::prekeys::{META_PREKEYS, META_PREKEYS_UPLOADED};
use crate::store::{SharedStore, Store};
use crate::this_device::ThisDevice;
use crate::transport::ConnectionSlot;
use crate::{now_ms, prekeys, sync};

/// The identity of an account, to give to a new device of the same account
/// (every device of an account shares the identity key, DESIGN "Linking a
/// device"). Transfer it over a channel you trust; it is the account's key.
pub struct LinkedIdentity {
    seed: Zeroizing<[u8; 32]>,
}

impl LinkedIdentity {
    /// The 32-byte identity seed (secret).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// Rebuilds from [`LinkedIdentity::seed`].
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            seed: Zeroizing::new(seed),
        }
    }
}

impl fmt::Debug for LinkedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkedIdentity(..)")
    }
}

/// Which identity a newly enrolled device uses.
#[derive(Debug)]
pub enum IdentitySource {
    /// A fresh identity: the account's first device (or a reinstall, which
    /// changes the safety number contacts see).
    New,
    /// The identity of the account's existing devices.
    Linked(LinkedIdentity),
}

/// Everything needed to enrol this device on an active account.
#[derive(Debug)]
pub struct Enrolment {
    /// The account.
    pub username: String,
    /// Its password.
    pub password: Zeroizing<String>,
    /// A current TOTP code or a recovery code.
    pub second_factor: SecondFactor,
    /// The identity this device uses.
    pub identity: IdentitySource,
}

struct Runner {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Set by the task before it announces its end (`Refused`, `Stopped`),
    /// so a `connect()` made in answer to that event starts a new task
    /// instead of finding the old one still winding down.
    ended: Arc<AtomicBool>,
}

/// One device of one account. Dropping it stops its background task.
pub struct Account {
    pub(crate) inner: Arc<Inner>,
    runner: Mutex<Option<Runner>>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.inner.me.username)
            .field("device_id", &self.inner.me.device_id)
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        if let Some(runner) = self
            .runner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            runner.task.abort();
        }
    }
}

// Meta keys of the profile.
const META_USERNAME: &str = "username";
const META_DEVICE_ID: &str = "device_id";
/// The server's addresses, comma-separated, in round-robin order (a store
/// written before clusters holds one address, which reads the same).
const META_SERVER_ADDR: &str = "server_addr";
const META_SERVER_NAME: &str = "server_name";
const META_SERVER_PIN: &str = "server_fingerprint";
const META_IDENTITY: &str = "identity_seed";
const META_DEVICE_KEY: &str = "device_seed";

fn join_addresses(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The stored address list; `None` when any entry is not an address.
fn split_addresses(stored: &str) -> Option<Vec<SocketAddr>> {
    stored.split(',').map(|a| a.parse().ok()).collect()
}

fn seed32(bytes: &[u8], what: &'static str) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(Zeroizing::new)
        .map_err(|_| StoreError::Corrupt { what })
}

impl Account {
    /// Enrols this device on an active account (password + second factor),
    /// creates its store at `store.path`, and returns the account (not
    /// connected yet; see [`Account::connect`]).
    ///
    /// # Errors
    /// [`AuthError`]: invalid input, the server's refusal, or a store that
    /// already holds an account.
    pub async fn enrol(
        store: &StoreConfig,
        server: ServerConfig,
        enrolment: Enrolment,
        config: AccountConfig,
    ) -> Result<(Account, Events), AuthError> {
        let mut db = Store::open(store)?;
        if db
            .tx(|tx| tx.meta(META_USERNAME))
            .map_err(OpenError::from)?
            .is_some()
        {
            return Err(OpenError::AlreadyEnrolled.into());
        }
        let mut device_seed = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(device_seed.as_mut());
        let device_key = SigningKey::from_bytes(&device_seed);
        let identity = match &enrolment.identity {
            IdentitySource::New => IdentityKeyPair::generate(&mut rand::rng()),
            IdentitySource::Linked(linked) => IdentityKeyPair::from_seed(&linked.seed),
        };
        let device_id = auth::enrol_device(
            &server,
            &enrolment.username,
            &enrolment.password,
            &enrolment.second_factor,
            &device_key,
            &config.device_name,
            config.connect_timeout,
        )
        .await?;
        let local_prekeys = prekeys::initial(&identity);
        db.tx(|tx| -> Result<(), StoreError> {
            tx.set_meta(META_USERNAME, enrolment.username.as_bytes())?;
            tx.set_meta(META_DEVICE_ID, &device_id.to_be_bytes())?;
            tx.set_meta(
                META_SERVER_ADDR,
                join_addresses(server.addresses()).as_bytes(),
            )?;
            tx.set_meta(META_SERVER_NAME, server.server_name.as_bytes())?;
            tx.set_meta(META_SERVER_PIN, &server.fingerprint)?;
            tx.set_secret(META_IDENTITY, identity.to_seed().as_slice())?;
            tx.set_secret(META_DEVICE_KEY, device_seed.as_slice())?;
            tx.set_secret(META_PREKEYS, &local_prekeys.to_bytes())?;
            tx.set_meta(META_PREKEYS_UPLOADED, &[0])?;
            Ok(())
        })
        .map_err(OpenError::from)?;
        Ok(Self::assemble(
            db,
            identity,
            device_key,
            enrolment.username,
            device_id,
            server,
            config,
        ))
    }

    /// Opens the account kept in an existing store.
    ///
    /// # Errors
    /// [`OpenError`]: wrong or missing passphrase, no account in the store,
    /// corrupt store.
    pub fn open(
        store: &StoreConfig,
        config: AccountConfig,
    ) -> Result<(Account, Events), OpenError> {
        let mut db = Store::open(store)?;
        let profile = db.tx(|tx| -> Result<_, StoreError> {
            let username = tx
                .meta_string(META_USERNAME)?
                .ok_or(StoreError::NoAccount)?;
            let device_id = tx.meta_u64(META_DEVICE_ID)?.ok_or(StoreError::NoAccount)?;
            let addresses = tx
                .meta_string(META_SERVER_ADDR)?
                .and_then(|a| split_addresses(&a))
                .ok_or(StoreError::Corrupt {
                    what: "server address",
                })?;
            let server_name = tx
                .meta_string(META_SERVER_NAME)?
                .ok_or(StoreError::Corrupt {
                    what: "server name",
                })?;
            let fingerprint = tx
                .meta(META_SERVER_PIN)?
                .and_then(|p| <[u8; 32]>::try_from(p.as_slice()).ok())
                .ok_or(StoreError::Corrupt {
                    what: "server fingerprint",
                })?;
            let identity = tx
                .secret("identity", META_IDENTITY)?
                .ok_or(StoreError::Corrupt { what: "identity" })?;
            let device = tx
                .secret("device key", META_DEVICE_KEY)?
                .ok_or(StoreError::Corrupt { what: "device key" })?;
            Ok((
                username,
                device_id,
                ServerConfig::stored(addresses, server_name, fingerprint).ok_or(
                    StoreError::Corrupt {
                        what: "server address",
                    },
                )?,
                seed32(&identity, "identity")?,
                seed32(&device, "device key")?,
            ))
        })?;
        let (username, device_id, server, identity_seed, device_seed) = profile;
        Ok(Self::assemble(
            db,
            IdentityKeyPair::from_seed(&identity_seed),
            SigningKey::from_bytes(&device_seed),
            username,
            device_id,
            server,
            config,
        ))
    }

    fn assemble(
        store: Store,
        identity: IdentityKeyPair,
        device_key: SigningKey,
        username: String,
        device_id: u64,
        server: ServerConfig,
        config: AccountConfig,
    ) -> (Account, Events) {
        let (events_tx, events) = Events::channel();
        let inner = Arc::new(Inner {
            store: SharedStore::new(store),
            me: ThisDevice {
                identity,
                device_key,
                username,
                device_id,
            },
            server,
            config,
            events: events_tx,
            outbox_wake: Notify::new(),
            online: ConnectionSlot::default(),
        });
        (
            Account {
                inner,
                runner: Mutex::new(None),
            },
            events,
        )
    }

    /// Starts the background connection (idempotent): log in, upload
    /// prekeys, fetch and store queued envelopes, drain the outbox, follow
    /// pushes; reconnect with exponential backoff and jitter when the
    /// connection fails. Needs a tokio runtime.
    pub fn connect(&self) {
        let mut runner = self.runner.lock().unwrap_or_else(PoisonError::into_inner);
        if runner
            .as_ref()
            .is_some_and(|r| !r.task.is_finished() && !r.ended.load(Ordering::Acquire))
        {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        let ended = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(sync::run(
            Arc::clone(&self.inner),
            stop_rx,
            Arc::clone(&ended),
        ));
        *runner = Some(Runner { stop, task, ended });
    }

    /// Stops the background connection and waits for it to end.
    pub async fn disconnect(&self) {
        let runner = self
            .runner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(runner) = runner {
            let _ = runner.stop.send(true);
            let _ = runner.task.await;
        }
        self.inner.online.set(None);
    }

    /// Whether the account is logged in right now.
    pub fn is_connected(&self) -> bool {
        self.inner.online.get().is_some()
    }

    /// The account's username.
    pub fn username(&self) -> &str {
        &self.inner.me.username
    }

    /// This device's id.
    pub fn device_id(&self) -> u64 {
        self.inner.me.device_id
    }

    /// The server this account talks to.
    pub fn server(&self) -> &ServerConfig {
        &self.inner.server
    }

    /// The server address the background connection is logged in
    /// through right now (one of [`ServerConfig::addresses`]), or `None`
    /// while offline.
    pub fn connected_to(&self) -> Option<SocketAddr> {
        self.inner.online.get().map(|conn| conn.remote_address())
    }

    /// The transport the background connection uses right now (QUIC or
    /// WebSocket, SPEC.md §12.13), or `None` while offline.
    pub fn connected_transport(&self) -> Option<crate::config::Transport> {
        self.inner.online.get().map(|conn| conn.transport())
    }

    /// The account's identity key (Ed25519 public, 32 bytes).
    pub fn identity_key(&self) -> [u8; 32] {
        self.inner.me.identity.public().to_bytes()
    }

    /// The identity to give to a new device of this account
    /// ([`IdentitySource::Linked`]).
    pub fn export_identity(&self) -> LinkedIdentity {
        LinkedIdentity {
            seed: self.inner.me.identity.to_seed(),
        }
    }

    // ---- contacts and safety numbers ----

    /// The safety number with a contact whose identity we know.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn safety_number(&self, username: &str) -> Result<Option<SafetyNumber>, StoreError> {
        let contact = self.inner.store.tx(|tx| tx.contact(username))?;
        Ok(contact.and_then(|c| {
            let key = c.pending.unwrap_or(c.identity);
            self.inner.me.safety_number_with(username, &key)
        }))
    }

    /// Whether `username` is a bot account (SPEC.md §12.3), as the server
    /// said when this device last fetched its keys (false before that).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn is_bot(&self, username: &str) -> Result<bool, StoreError> {
        self.inner.store.tx(|tx| crate::bots::is_bot(tx, username))
    }

    /// Usernames of known contacts, with whether a safety-number change is
    /// waiting for acknowledgement.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn contacts(&self) -> Result<Vec<(String, bool)>, StoreError> {
        Ok(self
            .inner
            .store
            .tx(|tx| tx.contacts())?
            .into_iter()
            .map(|(name, c)| (name, c.pending.is_some()))
            .collect())
    }

    /// Accepts a contact's new identity key (after the user compared the new
    /// safety number): sessions with the old identity are dropped and
    /// queued sends to the contact leave.
    ///
    /// # Errors
    /// [`AcknowledgeError::NothingPending`] when no change is waiting.
    pub fn acknowledge_identity_change(&self, username: &str) -> Result<(), AcknowledgeError> {
        self.inner.store.tx(|tx| -> Result<(), AcknowledgeError> {
            let mut contact =
                tx.contact(username)?
                    .ok_or_else(|| AcknowledgeError::NothingPending {
                        username: username.to_owned(),
                    })?;
            let new = contact
                .pending
                .take()
                .ok_or_else(|| AcknowledgeError::NothingPending {
                    username: username.to_owned(),
                })?;
            contact.identity = new;
            contact.devices_checked_ms = 0;
            tx.delete_sessions_not_of(username, &new)?;
            tx.set_contact(username, &contact)?;
            Ok(())
        })?;
        self.inner.outbox_wake.notify_one();
        Ok(())
    }

    // ---- sending ----

    fn queue(&self, conversation: &Conversation, content: Content) -> Result<MessageId, SendError> {
        crate::outbox::queue(&self.inner, conversation, content)
    }

    /// Sends a text message; returns its id. It waits in the outbox until
    /// connected ([`Event::Sent`](crate::Event::Sent) reports when the server stored it).
    ///
    /// # Errors
    /// [`SendError`]; nothing was queued.
    pub fn send_text(
        &self,
        conversation: &Conversation,
        text: &str,
    ) -> Result<MessageId, SendError> {
        check_text(text)?;
        self.queue(conversation, Content::text(new_id(), now_ms(), text))
    }

    /// Sends a text replying to (`author`, `target`), quoting `snippet`.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn send_reply(
        &self,
        conversation: &Conversation,
        text: &str,
        author: &str,
        target: MessageId,
        snippet: &str,
    ) -> Result<MessageId, SendError> {
        check_text(text)?;
        let snippet: String = snippet.chars().take(256).collect();
        self.queue(
            conversation,
            Content::reply(
                new_id(),
                now_ms(),
                text,
                ReplyTo::new(target, author, snippet),
            ),
        )
    }

    /// Adds (or, with `remove`, withdraws) an emoji reaction.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn react(
        &self,
        conversation: &Conversation,
        target: MessageId,
        emoji: &str,
        remove: bool,
    ) -> Result<MessageId, SendError> {
        self.queue(
            conversation,
            Content::reaction(new_id(), now_ms(), target, emoji, remove),
        )
    }

    /// Replaces the text of one of our messages.
    ///
    /// # Errors
    /// [`SendError::UnknownMessage`] when `target` is not ours.
    pub fn edit(
        &self,
        conversation: &Conversation,
        target: MessageId,
        text: &str,
    ) -> Result<MessageId, SendError> {
        check_text(text)?;
        let rows = self
            .inner
            .store
            .tx(|tx| tx.message_events(&self.inner.me.username, &target))?;
        if !rows.iter().any(|r| r.message_id == target) {
            return Err(SendError::UnknownMessage);
        }
        let revision = messages::latest_revision(&target, &rows).saturating_add(1);
        self.queue(
            conversation,
            Content::edit(new_id(), now_ms(), target, revision, text),
        )
    }

    /// Deletes one of our messages for everyone.
    ///
    /// # Errors
    /// [`SendError::UnknownMessage`] when `target` is not ours.
    pub fn delete(
        &self,
        conversation: &Conversation,
        target: MessageId,
    ) -> Result<MessageId, SendError> {
        let rows = self
            .inner
            .store
            .tx(|tx| tx.message_events(&self.inner.me.username, &target))?;
        if !rows.iter().any(|r| r.message_id == target) {
            return Err(SendError::UnknownMessage);
        }
        self.queue(conversation, Content::delete(new_id(), now_ms(), target))
    }

    /// Tells the conversation (and our other devices) that we read these messages.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn mark_read(
        &self,
        conversation: &Conversation,
        ids: &[MessageId],
    ) -> Result<MessageId, SendError> {
        self.queue(
            conversation,
            Content::read_receipt(new_id(), now_ms(), ids.iter().copied()),
        )
    }

    /// Sends a delivery receipt (sent automatically when
    /// [`AccountConfig::delivery_receipts`] is on).
    ///
    /// # Errors
    /// [`SendError`].
    pub fn mark_delivered(
        &self,
        conversation: &Conversation,
        ids: &[MessageId],
    ) -> Result<MessageId, SendError> {
        self.queue(
            conversation,
            Content::delivery_receipt(new_id(), now_ms(), ids.iter().copied()),
        )
    }

    /// Announces that we started (or stopped) typing.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn typing(
        &self,
        conversation: &Conversation,
        started: bool,
    ) -> Result<MessageId, SendError> {
        let action = if started {
            TypingAction::Started
        } else {
            TypingAction::Stopped
        };
        self.queue(conversation, Content::typing(new_id(), now_ms(), action))
    }

    /// How many sends wait in the outbox.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.store.tx(|tx| tx.outbox_len())
    }

    // ---- history ----

    /// The converged state of the message (`author`, `id`), if known.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn message(
        &self,
        author: &str,
        id: &MessageId,
    ) -> Result<Option<MessageSnapshot>, StoreError> {
        let rows = self.inner.store.tx(|tx| tx.message_events(author, id))?;
        Ok(messages::fold(author, id, &rows))
    }

    /// The newest `limit` messages of a conversation, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn history(
        &self,
        conversation: &Conversation,
        limit: u32,
    ) -> Result<Vec<MessageSnapshot>, StoreError> {
        let heads = self
            .inner
            .store
            .tx(|tx| tx.history(&conversation.key(), limit))?;
        let mut out = Vec::with_capacity(heads.len());
        for head in heads {
            if let Some(snapshot) = self.message(&head.author, &head.message_id)? {
                out.push(snapshot);
            }
        }
        Ok(out)
    }

    /// Current reactions to a message: (who, emoji) pairs, after removals.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn reactions(&self, target: &MessageId) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.inner.store.tx(|tx| tx.reactions(target))?;
        let mut current: Vec<(String, String)> = Vec::new();
        for row in rows {
            let Ok(content) = Content::decode(row.content.as_slice()) else {
                continue;
            };
            if let Some(microbot_protocol::content::content::Body::Reaction(r)) = content.body {
                let entry = (row.author.clone(), r.emoji);
                current.retain(|e| *e != entry);
                if !r.remove {
                    current.push(entry);
                }
            }
        }
        Ok(current)
    }

    // ---- requests that need the connection ----

    async fn request(&self, request: Request) -> Result<response::Result, OnlineError> {
        let conn = self.inner.online.get().ok_or(OnlineError::NotConnected)?;
        Ok(conn.request(request).await?)
    }

    /// This device's unused prekeys on the server.
    ///
    /// # Errors
    /// [`OnlineError`].
    pub async fn prekey_status(&self) -> Result<PrekeyStatus, OnlineError> {
        match self
            .request(Request::PrekeyStatus(PrekeyStatusRequest {}))
            .await?
        {
            response::Result::PrekeyStatus(status) => Ok(status),
            _ => Err(TransportError::UnexpectedResponse {
                expected: "PrekeyStatus",
            }
            .into()),
        }
    }

    /// The account's devices.
    ///
    /// # Errors
    /// [`OnlineError`].
    pub async fn list_devices(&self) -> Result<Vec<DeviceInfo>, OnlineError> {
        let conn = self.inner.online.get().ok_or(OnlineError::NotConnected)?;
        Ok(sync::list_devices(&conn).await?)
    }

    /// Removes one of the account's devices (password + fresh TOTP code).
    ///
    /// # Errors
    /// [`OnlineError`] (the server's refusal as `TransportError::Server`).
    pub async fn remove_device(
        &self,
        device_id: u64,
        password: &str,
        totp_code: &str,
    ) -> Result<(), OnlineError> {
        let conn = self.inner.online.get().ok_or(OnlineError::NotConnected)?;
        let result = conn
            .request(Request::RemoveDevice(RemoveDeviceRequest {
                device_id,
                password: password.to_owned(),
                totp_code: totp_code.to_owned(),
                second_factor: None,
            }))
            .await?;
        auth::expect_ok(result)?;
        if device_id == self.inner.me.device_id {
            // This device is gone: its connection closes, and the account's
            // other devices are the ones that can still sign.
            return Ok(());
        }
        // SPEC.md §20: the remover signs the list without the device, so
        // contacts stop encrypting to it even if a server kept it.
        use crate::device_lists::SignError;
        match crate::device_lists::sign_out(&self.inner, &conn, device_id).await {
            Ok(()) => Ok(()),
            Err(SignError::Transport(error)) => Err(error.into()),
            Err(SignError::Store(error)) => Err(error.into()),
            Err(SignError::Contended) => Err(OnlineError::Transport(TransportError::Server(
                crate::error::ServerError {
                    code: ErrorCode::StaleDeviceList,
                    message: "the device list kept changing; sign again".into(),
                    retry_after_ms: 0,
                    device_ids: vec![device_id],
                },
            ))),
            Err(error @ (SignError::Refused(_) | SignError::Build(_))) => {
                tracing::error!(%error, "device removed, but no list without it could be signed");
                Err(OnlineError::Transport(TransportError::UnexpectedResponse {
                    expected: "a device list signed by this account's identity",
                }))
            }
        }
    }

    /// Deletes the whole account on the server (password + fresh TOTP code).
    /// The local store is left as it is.
    ///
    /// # Errors
    /// [`OnlineError`].
    pub async fn delete_account(&self, password: &str, totp_code: &str) -> Result<(), OnlineError> {
        let result = self
            .request(Request::DeleteAccount(DeleteAccountRequest {
                password: password.to_owned(),
                totp_code: totp_code.to_owned(),
            }))
            .await?;
        Ok(auth::expect_ok(result)?)
    }
}

/// Refuses, before anything is queued, a text that is empty or only white
/// space, and one longer than [`crate::MAX_TEXT_LEN`] (checked here so the
/// error quotes that one limit, not the whole content's).
fn check_text(text: &str) -> Result<(), SendError> {
    if text.trim().is_empty() {
        return Err(SendError::EmptyText);
    }
    if text.len() > crate::MAX_TEXT_LEN {
        return Err(SendError::TextTooLong {
            len: text.len(),
            max: crate::MAX_TEXT_LEN,
        });
    }
    Ok(())
}
