//! [`Account`]: one device of one account — enrol or open, connect, send,
//! react, edit, groups, files — and its events.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use microbot_client::{
    AccountConfig, Conversation, Enrolment, Events, FileOptions, IdentitySource, MessageId,
    MessageIdText as _, SecondFactor, StoreConfig,
};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::MicrobotError;
use crate::event::Event;
use crate::runtime::{block_on, runtime};
use crate::server::Server;

/// Receives every event of an account, on the account's event thread, in
/// order (set with [`Account::set_listener`]).
#[uniffi::export(callback_interface)]
pub trait EventListener: Send + Sync {
    /// Called once per event.
    fn on_event(&self, event: Event);
}

/// The thread delivering events to a listener.
struct Pump {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// One device of one account, opened from its local store.
#[derive(uniffi::Object)]
pub struct Account {
    /// The SDK's account, until [`Account::close`].
    account: RwLock<Option<microbot_client::Account>>,
    username: String,
    device_id: u64,
    /// The events, until a listener takes them.
    events: Arc<tokio::sync::Mutex<Option<Events>>>,
    pump: Mutex<Option<Pump>>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.account.read().unwrap_or_else(PoisonError::into_inner) {
            Some(account) => account.fmt(f),
            None => f.write_str("Account(closed)"),
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        if let Some(mut pump) = self
            .pump
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            pump.stop();
        }
    }
}

/// Parses a conversation: `u:<username>`, `g:<group id hex>`, or a bare
/// username.
fn conversation(text: &str) -> Result<Conversation, MicrobotError> {
    if !text.contains(':') {
        return Ok(Conversation::Direct(text.to_owned()));
    }
    Conversation::from_key(text).ok_or_else(|| {
        MicrobotError::invalid(format!(
            "conversation {text:?} is not u:<username>, g:<32 hex digits> or a username"
        ))
    })
}

/// Parses a message id (32 hex digits).
fn message_id(text: &str) -> Result<MessageId, MicrobotError> {
    MessageId::from_text(text)
        .map_err(|_| MicrobotError::invalid(format!("message id {text:?} is not 32 hex digits")))
}

fn store_config(path: &str, passphrase: Option<String>) -> StoreConfig {
    let store = StoreConfig::new(path);
    match passphrase {
        Some(p) => store.with_passphrase(p),
        None => store,
    }
}

impl Account {
    /// Runs `f` on the open account; `State` once it is closed.
    fn live<T>(
        &self,
        f: impl FnOnce(&microbot_client::Account) -> Result<T, MicrobotError>,
    ) -> Result<T, MicrobotError> {
        let guard = self.account.read().unwrap_or_else(PoisonError::into_inner);
        let account = guard
            .as_ref()
            .ok_or_else(|| MicrobotError::state("the account is closed"))?;
        f(account)
    }

    fn wrap(account: microbot_client::Account, events: Events) -> Self {
        Self {
            username: account.username().to_owned(),
            device_id: account.device_id(),
            account: RwLock::new(Some(account)),
            events: Arc::new(tokio::sync::Mutex::new(Some(events))),
            pump: Mutex::new(None),
        }
    }
}

#[uniffi::export]
impl Account {
    /// Enrols this device on an active account and creates its store at
    /// `store_path` (encrypted at rest with `passphrase` when given).
    /// Not connected yet: see [`Account::connect`].
    #[uniffi::constructor]
    pub fn enrol(
        server: Arc<Server>,
        store_path: String,
        passphrase: Option<String>,
        username: String,
        password: String,
        totp_code: String,
        device_name: Option<String>,
    ) -> Result<Self, MicrobotError> {
        let mut config = AccountConfig::default();
        if let Some(name) = device_name {
            config.device_name = name;
        }
        let enrolment = Enrolment {
            username,
            password: Zeroizing::new(password),
            second_factor: SecondFactor::Totp(totp_code),
            identity: IdentitySource::New,
        };
        let (account, events) = block_on(microbot_client::Account::enrol(
            &store_config(&store_path, passphrase),
            server.config.clone(),
            enrolment,
            config,
        ))??;
        Ok(Self::wrap(account, events))
    }

    /// Reopens the account kept in the store at `store_path`.
    #[uniffi::constructor]
    pub fn open(store_path: String, passphrase: Option<String>) -> Result<Self, MicrobotError> {
        let _context = runtime()?.enter();
        let (account, events) = microbot_client::Account::open(
            &store_config(&store_path, passphrase),
            AccountConfig::default(),
        )?;
        Ok(Self::wrap(account, events))
    }

    /// Starts the background connection (login, prekeys, sync, outbox,
    /// reconnects); returns at once. Progress arrives as `Connection` events.
    pub fn connect(&self) -> Result<(), MicrobotError> {
        let _context = runtime()?.enter();
        self.live(|account| {
            account.connect();
            Ok(())
        })
    }

    /// Stops the background connection.
    pub fn disconnect(&self) -> Result<(), MicrobotError> {
        self.live(|account| block_on(account.disconnect()))
    }

    /// Stops the connection and the listener and closes the store, so
    /// that another handle — here or in another process — can open it
    /// (a store is open in one handle at a time). Every later call on this
    /// object fails with `State`; closing twice is harmless.
    pub fn close(&self) -> Result<(), MicrobotError> {
        let account = self
            .account
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(pump) = self
            .pump
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            pump.stop();
        }
        if let Some(account) = account {
            block_on(account.disconnect())?;
        }
        Ok(())
    }

    /// This account's username.
    pub fn username(&self) -> String {
        self.username.clone()
    }

    /// This device's id.
    pub fn device_id(&self) -> u64 {
        self.device_id
    }

    /// The next event, waiting up to `timeout_ms`; `None` on timeout.
    /// Not available once a listener is set.
    pub fn next_event(&self, timeout_ms: u64) -> Result<Option<Event>, MicrobotError> {
        let events = Arc::clone(&self.events);
        block_on(async move {
            let mut guard = events.lock().await;
            let stream = guard
                .as_mut()
                .ok_or_else(|| MicrobotError::state("events go to the listener"))?;
            match tokio::time::timeout(Duration::from_millis(timeout_ms), stream.next()).await {
                Ok(Some(event)) => Ok(Some(event.into())),
                Ok(None) | Err(_) => Ok(None),
            }
        })?
    }

    /// Sends every event from now on to `listener`, on a thread of the
    /// library (one per account, in order), instead of [`Account::next_event`].
    pub fn set_listener(&self, listener: Box<dyn EventListener>) -> Result<(), MicrobotError> {
        let rt = runtime()?;
        let mut events = block_on(self.events.lock())?
            .take()
            .ok_or_else(|| MicrobotError::state("this account already has a listener"))?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("microbot-events".into())
            .spawn(move || {
                loop {
                    let next = rt.block_on(async {
                        tokio::select! {
                            _ = &mut stopped => None,
                            event = events.next() => event,
                        }
                    });
                    let Some(event) = next else { break };
                    listener.on_event(event.into());
                }
            })
            .map_err(|e| MicrobotError::state(format!("cannot start the event thread: {e}")))?;
        *self.pump.lock().unwrap_or_else(PoisonError::into_inner) = Some(Pump {
            stop: Some(stop),
            thread: Some(thread),
        });
        Ok(())
    }

    /// Queues a text to `conversation` (`u:<username>`, a username, or
    /// `g:<group id hex>`); returns the message id. A `Sent` event follows
    /// once the server stored it.
    pub fn send_text(
        &self,
        conversation_key: String,
        text: String,
    ) -> Result<String, MicrobotError> {
        let to = conversation(&conversation_key)?;
        let id = self.live(|account| Ok(account.send_text(&to, &text)?))?;
        Ok(hex::encode(id))
    }

    /// Reacts to (or withdraws a reaction from) a message.
    pub fn react(
        &self,
        conversation_key: String,
        message_id_hex: String,
        emoji: String,
        remove: bool,
    ) -> Result<(), MicrobotError> {
        let (to, target) = (
            conversation(&conversation_key)?,
            message_id(&message_id_hex)?,
        );
        self.live(|account| Ok(account.react(&to, target, &emoji, remove).map(drop)?))
    }

    /// Replaces the text of one of this account's messages.
    pub fn edit(
        &self,
        conversation_key: String,
        message_id_hex: String,
        text: String,
    ) -> Result<(), MicrobotError> {
        let (to, target) = (
            conversation(&conversation_key)?,
            message_id(&message_id_hex)?,
        );
        self.live(|account| Ok(account.edit(&to, target, &text).map(drop)?))
    }

    /// Creates a group with `members` (this account is its admin); returns
    /// its conversation key `g:<hex>`. Needs the connection.
    pub fn create_group(
        &self,
        name: String,
        members: Vec<String>,
    ) -> Result<String, MicrobotError> {
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let id = self.live(|account| Ok(block_on(account.create_group(&name, &members))??))?;
        Ok(format!("g:{id}"))
    }

    /// The members of a group, by username.
    pub fn group_members(&self, conversation_key: String) -> Result<Vec<String>, MicrobotError> {
        let Conversation::Group(id) = conversation(&conversation_key)? else {
            return Err(MicrobotError::invalid("not a group conversation"));
        };
        let info = self
            .live(|account| Ok(account.group(&id)?))?
            .ok_or_else(|| MicrobotError::invalid("unknown group"))?;
        Ok(info.members.into_iter().map(|m| m.username).collect())
    }

    /// Encrypts the file at `path` (streaming) into a staging copy and
    /// queues it with `caption`, online or offline, like a text; returns
    /// the message id. The upload and the send happen when connected
    /// (`Sent` or `SendFailed` event).
    pub fn send_file(
        &self,
        conversation_key: String,
        path: String,
        caption: Option<String>,
    ) -> Result<String, MicrobotError> {
        let options = FileOptions {
            caption: caption.unwrap_or_default(),
            ..FileOptions::default()
        };
        let to = conversation(&conversation_key)?;
        let id = self.live(|account| {
            Ok(block_on(account.send_attachment(
                &to,
                Path::new(&path),
                options,
                |_| {},
            ))??)
        })?;
        Ok(hex::encode(id))
    }

    /// Downloads, verifies and decrypts the file of a received message to
    /// `dest_path`; returns its size. Needs the connection.
    pub fn download_attachment(
        &self,
        message_id_hex: String,
        dest_path: String,
    ) -> Result<u64, MicrobotError> {
        let id = message_id(&message_id_hex)?;
        self.live(|account| {
            Ok(block_on(account.download_attachment(
                &id,
                Path::new(&dest_path),
                |_| {},
            ))??)
        })
    }

    /// The safety number with `username`, once a session exists.
    pub fn safety_number(&self, username: String) -> Result<Option<String>, MicrobotError> {
        self.live(|account| Ok(account.safety_number(&username)?.map(|n| n.to_string())))
    }
}
