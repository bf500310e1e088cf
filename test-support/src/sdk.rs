//! The harness of tests written against the client SDK: a real server
//! in-process on loopback (port 0, [`crate::test_config`]) with its SQLite
//! file in a temp dir, accounts registered through the SDK with real TOTP
//! codes, devices enrolled into their own stores, and waiting for events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use microbot_client::{
    Account, AccountConfig, AuthError, ConnectionState, Enrolment, Event, Events, IdentitySource,
    KdfParams, SecondFactor, ServerConfig, StoreConfig,
};
use microbot_server::{Config, Server, ShutdownHandle};

use zeroize::Zeroizing;

/// How long a test waits for an event before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A server in-process on the test's own tokio runtime.
pub struct TestServer {
    /// Its QUIC address (the WebSocket is on the same port over TCP).
    pub addr: SocketAddr,
    /// What a client needs to reach it (address and pinned fingerprint).
    pub config: ServerConfig,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// Its `/metrics` listener, when the configuration has one.
    pub metrics_addr: Option<SocketAddr>,
    handle: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server on a free loopback port.
    pub async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), "127.0.0.1:0".parse().unwrap()).await
    }

    /// A server on `listen` with its data in `dir` (a restart keeps it).
    pub async fn start_in(dir: tempfile::TempDir, listen: SocketAddr) -> Self {
        Self::start_tweaked(dir, listen, |_| {}).await
    }

    /// A server whose test configuration `tweak` changes first.
    pub async fn start_tweaked(
        dir: tempfile::TempDir,
        listen: SocketAddr,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = crate::test_config(dir.path(), listen);
        tweak(&mut config);
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let config = ServerConfig::new(addr, server.fingerprint()).unwrap();
        let metrics_addr = server.metrics_addr();
        let (handle, rx) = server.handle();
        let task = tokio::spawn(server.run(rx));
        Self {
            addr,
            config,
            dir,
            metrics_addr,
            handle,
            task: Some(task),
        }
    }

    /// Stops the server and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap();
        }
        self.dir
    }
}

/// The authenticator app: a fresh time step per code (the test server
/// accepts ±10 steps).
pub use crate::Authenticator;

/// A registered, confirmed account (no device yet).
pub struct User {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
    /// The authenticator app holding its TOTP secret.
    pub auth: Authenticator,
    /// The recovery codes the registration printed.
    pub recovery_codes: Vec<String>,
    /// The `otpauth://` URI the registration printed.
    pub otpauth_uri: String,
}

/// Registers and confirms `username` (a person).
pub async fn register(server: &TestServer, username: &str) -> User {
    register_as(server, username, false).await
}

/// A registered, confirmed bot account (SPEC.md §12.3).
pub async fn register_bot(server: &TestServer, username: &str) -> User {
    register_as(server, username, true).await
}

async fn register_as(server: &TestServer, username: &str, bot: bool) -> User {
    let password = format!("pw-{username}-secret");
    let registration = if bot {
        microbot_client::register_bot(&server.config, username, &password).await
    } else {
        microbot_client::register(&server.config, username, &password).await
    }
    .unwrap();
    let mut auth = Authenticator::from_base32(&registration.totp_secret_base32);
    microbot_client::confirm_registration(&server.config, username, &password, &auth.fresh())
        .await
        .unwrap();
    User {
        username: username.to_owned(),
        password,
        auth,
        recovery_codes: registration
            .recovery_codes
            .iter()
            .map(|c| c.to_string())
            .collect(),
        otpauth_uri: registration.otpauth_uri.to_string(),
    }
}

/// Cheap store key derivation for tests.
pub const CHEAP_KDF: KdfParams = KdfParams::new(64, 1, 1);

/// An account configuration that reconnects quickly and uploads small
/// prekey batches.
pub fn fast_config() -> AccountConfig {
    let mut config = AccountConfig::default();
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(400);
    config.prekey_batch = 20;
    config
}

/// A device: its store file and handle.
pub struct Device {
    /// The account handle.
    pub account: Account,
    /// Its event stream.
    pub events: Events,
    /// Where its store is.
    pub store: StoreConfig,
    /// The directory holding the store.
    pub dir: tempfile::TempDir,
}

impl Device {
    /// The store file.
    pub fn path(&self) -> PathBuf {
        self.store.path.clone()
    }
}

/// What `user` enrols with: their password and a TOTP code not used before.
pub fn enrolment(user: &mut User, identity: IdentitySource) -> Enrolment {
    Enrolment {
        username: user.username.clone(),
        password: Zeroizing::new(user.password.clone()),
        second_factor: SecondFactor::Totp(user.auth.fresh()),
        identity,
    }
}

/// Enrols `user` into `store` through the server at `server` (any
/// address: a relay, a node of a cluster), as the SDK answers.
pub async fn try_enrol(
    server: &ServerConfig,
    store: &StoreConfig,
    user: &mut User,
    identity: IdentitySource,
    config: AccountConfig,
) -> Result<(Account, Events), AuthError> {
    let enrolment = enrolment(user, identity);
    Account::enrol(store, server.clone(), enrolment, config).await
}

/// Enrols a new device of `user` with its own store (not connected).
pub async fn enrol(
    server: &TestServer,
    user: &mut User,
    identity: IdentitySource,
    config: AccountConfig,
    passphrase: Option<&str>,
) -> Device {
    enrol_via(&server.config, user, identity, config, passphrase).await
}

/// Enrols a new device of `user` with its own store (not connected) that
/// reaches the server as `server` says (a [`crate::UdpLink`], a node).
pub async fn enrol_via(
    server: &ServerConfig,
    user: &mut User,
    identity: IdentitySource,
    config: AccountConfig,
    passphrase: Option<&str>,
) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    if let Some(p) = passphrase {
        store = store.with_passphrase(p);
    }
    let (account, events) = try_enrol(server, &store, user, identity, config)
        .await
        .unwrap();
    Device {
        account,
        events,
        store,
        dir,
    }
}

/// Enrols and connects, waiting until the first sync is done.
pub async fn online(
    server: &TestServer,
    user: &mut User,
    identity: IdentitySource,
    config: AccountConfig,
) -> Device {
    let mut device = enrol(server, user, identity, config, None).await;
    device.account.connect();
    wait_connected(&mut device.events).await;
    device
}

/// Registers `username` and brings a first device online (a new
/// identity, [`fast_config`]), for tests that need the user no further.
pub async fn online_as(server: &TestServer, username: &str) -> Device {
    let mut user = register(server, username).await;
    online(server, &mut user, IdentitySource::New, fast_config()).await
}

/// Waits for `Connected` (panics after [`WAIT`]).
pub async fn wait_connected(events: &mut Events) {
    wait_for(events, |e| {
        matches!(e, Event::Connection(ConnectionState::Connected)).then_some(())
    })
    .await;
}

/// Waits for the first event `f` accepts; panics after [`WAIT`].
pub async fn wait_for<T>(events: &mut Events, mut f: impl FnMut(&Event) -> Option<T>) -> T {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => {
                if let Some(value) = f(&event) {
                    return value;
                }
                seen.push(format!("{event:?}"));
            }
            Ok(None) => panic!("event stream ended; seen: {seen:#?}"),
            Err(_) => panic!("timed out; seen: {seen:#?}"),
        }
    }
}

/// Waits for a text message and returns (author, conversation, text, id).
pub async fn next_text(events: &mut Events) -> microbot_client::IncomingMessage {
    wait_for(events, |e| match e {
        Event::Message(m) => Some((**m).clone()),
        _ => None,
    })
    .await
}

/// Asserts no text message arrives within `wait`.
pub async fn no_text_within(events: &mut Events, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        if let Event::Message(m) = event {
            panic!("unexpected message {m:?}");
        }
    }
}
