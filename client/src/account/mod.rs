//! [`Account`]: one device of one account, opened from its local store.
//!
//! An account is created by enrolling this device ([`Account::enrol`]) and
//! reopened with [`Account::open`]. Sends are queued in the outbox and leave
//! when connected ([`Account::connect`] starts the background connection:
//! login, prekeys, sync of queued envelopes, outbox, pushes, reconnects).
//!
//! Every public method of [`Account`] is here (opening, connecting, who
//! we are) or in a file of this folder (contacts.rs, messaging.rs,
//! devices.rs, groups.rs, files.rs, linking.rs, shown.rs), each handing over to the
//! feature module that holds the logic (groups/admin.rs, attachments/,
//! linking.rs, shown.rs). Only linking.rs names `Account` back, to enrol a
//! provisioned device through [`Account::enrol`].
//!
//! Not owned here: encryption per device (sessions.rs), the connection loop
//! (sync.rs), the SQL (store/), the state shared with the background task
//! (account_state.rs).

mod contacts;
mod devices;
mod files;
mod groups;
mod linking;
mod messaging;
mod shown;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::SigningKey;
use microbot_crypto::IdentityKeyPair;
use rand::Rng as _;
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

use crate::account_state::Inner;
use crate::auth::{self, SecondFactor};
use crate::config::{AccountConfig, ServerConfig, StoreConfig};
use crate::error::{AuthError, OpenError, StoreError};
use crate::events::Events;
use crate::prekeys::{META_PREKEYS, META_PREKEYS_UPLOADED};
use crate::store::{SharedStore, Store};
use crate::this_device::ThisDevice;
use crate::transport::ConnectionSlot;
use crate::{prekeys, sync};

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
    /// creates its store (at `store.path`, in memory, or in the
    /// application's backend: see [`StoreConfig`]), and returns the
    /// account (not connected yet; see [`Account::connect`]).
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
        // A file made here is removed again if the enrolment fails.
        let mut new_store = Store::create(store)?;
        if new_store
            .store()
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
        new_store
            .store()
            .tx(|tx| -> Result<(), StoreError> {
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
                // A store made now has no receipts from before the table.
                crate::delivery::fold_stored_receipts(tx, &enrolment.username)?;
                Ok(())
            })
            .map_err(OpenError::from)?;
        Ok(Self::assemble(
            new_store.keep(),
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
            crate::delivery::fold_stored_receipts(tx, &username)?;
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
            address_tokens: crate::tls::AddressTokens::default(),
            upload_interrupted: std::sync::atomic::AtomicBool::new(false),
        });
        (
            Account {
                inner,
                runner: Mutex::new(None),
            },
            events,
        )
    }

    /// Waits until the background connection is up: logged in, prekeys
    /// published, the `Connected` event sent. Requests that need the
    /// connection (`create_group`, `download_attachment`, `list_devices`, …) work
    /// from then on, until it drops. Returns at once when connected; waits
    /// as long as it takes otherwise (wrap it in a timeout), so call
    /// [`Account::connect`] first.
    pub async fn wait_connected(&self) {
        self.inner.online.ready().await;
    }

    /// Another stream of this account's events: every event from now on,
    /// in order, independent of the others (each consumer — a UI, a
    /// notifier, a logger — reads its own). A dropped stream costs nothing.
    pub fn subscribe(&self) -> Events {
        self.inner.events.subscribe()
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
}
