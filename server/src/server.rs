//! Server assembly and life cycle (SPEC.md §12.1): open storage, load the
//! certificate, bind, accept connections, purge expired envelopes, and shut
//! down gracefully.
//!
//! Shutdown: stop accepting (new handshakes are refused), tell every
//! connection to finish its current request and close with
//! `ERROR_CODE_UNAVAILABLE` (retry hint 1 s), wait up to
//! `shutdown_grace_secs` for them, close what is left, and wait for the
//! endpoint to be idle so the peers received the closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::attachments::UploadsInProgress;
use crate::auth::login_records::CountedToday;
use crate::auth::password::{PasswordError, PasswordHasher};
use crate::backup::{BackupError, DataDirLock, lock_data_dir};
use crate::bus::Bus;
use crate::bus::local::LocalBus;
use crate::bus::redis::{RedisBus, RedisBusError};
use crate::config::Config;
use crate::config::Secret;
use crate::endpoint::{self, EndpointError};
use crate::limits::shared::SharedLimits;
use crate::limits::{Limits, Refusal};
use crate::metrics::Metrics;
use crate::state::ServerState;
use crate::storage::{self, OpenStorageError};
use crate::webhooks::{self, WebhookClient, WebhookTarget, Webhooks};
use crate::{connection, queues, websocket};

/// The next TCP connection of the WebSocket listener; never resolves
/// without one.
async fn accept_tcp(
    listener: Option<&WsListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(ws) => ws.listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Errors starting a server: which step failed, with the failing
/// component's own error behind it ([`ComponentError`]: its message and
/// `source()` chain; the types are the server's own and not part of its
/// API). The operator's remedy is in the message: fix the setting, free
/// the address or the data directory, and start again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be opened (SQLite file or PostgreSQL).
    #[error(transparent)]
    Storage(ComponentError),
    /// The Redis URL is invalid.
    #[error(transparent)]
    Redis(ComponentError),
    /// Certificate or socket setup failed.
    #[error(transparent)]
    Endpoint(ComponentError),
    /// The password hasher could not be built (argon2 parameters).
    #[error(transparent)]
    Password(ComponentError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory is in use by another server.
    #[error(transparent)]
    Lock(#[from] BackupError),
    /// The metrics listener could not be bound.
    #[error("cannot bind metrics listener {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The error of one of the server's components behind a [`StartError`]:
/// it displays as that error and hands out its `source()` chain.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ComponentError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl ComponentError {
    fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

impl From<OpenStorageError> for StartError {
    fn from(error: OpenStorageError) -> Self {
        Self::Storage(ComponentError::new(error))
    }
}

impl From<RedisBusError> for StartError {
    fn from(error: RedisBusError) -> Self {
        Self::Redis(ComponentError::new(error))
    }
}

impl From<EndpointError> for StartError {
    fn from(error: EndpointError) -> Self {
        Self::Endpoint(ComponentError::new(error))
    }
}

impl From<PasswordError> for StartError {
    fn from(error: PasswordError) -> Self {
        Self::Password(ComponentError::new(error))
    }
}

/// Creates the data directory (and missing parents) with mode 0700: it
/// holds password hashes, TOTP secrets and the TLS key (SPEC.md §18.1). An
/// existing directory keeps the mode its operator gave it.
fn private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Creates `path` empty with mode 0600 if it does not exist, else narrows
/// its mode to 0600.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    drop(options.open(path)?);
    restrict(path, 0o600)
}

/// Sets the permission bits of `path` (Unix; elsewhere nothing).
fn restrict(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// A bound server, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    state: Arc<ServerState>,
    endpoint: quinn::Endpoint,
    fingerprint: String,
    generated_certificate: bool,
    metrics_listener: Option<tokio::net::TcpListener>,
    /// TLS for the admin listener when it is not on loopback (SPEC.md §18.7).
    admin_tls: Option<crate::admin::AdminTls>,
    websocket: Option<WsListener>,
    webhook: Option<(WebhookClient, tokio::sync::mpsc::Receiver<u64>)>,
    _lock: DataDirLock,
}

/// The WebSocket listener and its TLS configuration (`None`: plain `ws://`).
struct WsListener {
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for WsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsListener")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Triggers a graceful shutdown of a running server.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Starts the graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }
}

impl Server {
    /// Creates the data directory, opens (or creates) the database, loads
    /// (or generates) the certificate and binds the endpoint. Async
    /// because opening the storage is (PostgreSQL connects and migrates on
    /// this runtime, which then drives its connections and writers).
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        Self::open(config, Arc::new(crate::clock::SystemClock)).await
    }

    /// [`Server::bind`] with the clock every handler reads (a
    /// `ManualClock` lets a test move time instead of sleeping). Feature
    /// `testing` only.
    ///
    /// # Errors
    /// [`StartError`].
    #[cfg(feature = "testing")]
    pub async fn bind_with_clock(
        config: Config,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Self, StartError> {
        Self::open(config, clock).await
    }

    /// [`Server::bind`] with the clock every handler reads.
    async fn open(config: Config, clock: Arc<dyn crate::clock::Clock>) -> Result<Self, StartError> {
        config.validate()?;
        private_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let sqlite = matches!(
            config.storage_backend(),
            Ok(crate::config::StorageBackend::Sqlite)
        );
        let database = config.database_path();
        if sqlite {
            // Created 0600 before SQLite opens it (its -wal and -shm files
            // take the database file's mode); an existing one is narrowed.
            private_file(&database).map_err(|source| StartError::DataDir {
                path: database.clone(),
                source,
            })?;
        }
        let storage = storage::open(&config).await?;
        if sqlite {
            for suffix in ["-wal", "-shm"] {
                let mut path = database.clone().into_os_string();
                path.push(suffix);
                let path = std::path::PathBuf::from(path);
                if path.exists() {
                    restrict(&path, 0o600).map_err(|source| StartError::DataDir {
                        path: path.clone(),
                        source,
                    })?;
                }
            }
        }
        let (bus, shared_limits): (Arc<dyn Bus>, _) = match &config.redis {
            Some(url) => {
                let bus = RedisBus::start(url.expose(), &config.redis_namespace)?;
                tracing::info!(node = %bus.node_id(), redis = %url.redacted(), "cluster node");
                let shared = SharedLimits::new(url.expose(), &config.redis_namespace)
                    .map_err(RedisBusError::Url)?;
                (Arc::new(bus), Some(shared))
            }
            None => (Arc::new(LocalBus::new()), None),
        };
        let identity = endpoint::load_identity(&config)?;
        let (endpoint, ws_listener) =
            endpoint::bind_with_websocket(&config, endpoint::server_config(&config, &identity)?)?;
        let websocket = match ws_listener {
            Some(listener) => {
                let addr = listener.local_addr().ok();
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| {
                    EndpointError::Bind {
                        addr: addr.unwrap_or(config.listen),
                        source,
                    }
                })?;
                let tls = if config.ws_plain {
                    None
                } else {
                    Some(websocket::tls_acceptor(&identity)?)
                };
                Some(WsListener { listener, tls })
            }
            None => None,
        };
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let bound = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(tokio::net::TcpListener::from_std)
                    .map_err(|source| StartError::MetricsBind { addr, source })?;
                Some(bound)
            }
            None => None,
        };
        let admin_tls = match config.metrics_listen {
            Some(addr) if !addr.ip().is_loopback() => Some(crate::admin::tls_acceptor(&identity)?),
            _ => None,
        };
        let (webhooks, webhook) = match &config.webhook_url {
            Some(url) => {
                let target = WebhookTarget::parse(url, config.webhook_allow_private)
                    .map_err(crate::config::ConfigError::from)?;
                let client = WebhookClient::new(
                    target,
                    config.webhook_allow_private,
                    config.webhook_ca_pem.as_deref(),
                    config.webhook_secret.as_ref().map(Secret::expose),
                    config.webhook_timeout_ms,
                )
                .map_err(crate::config::ConfigError::from)?;
                let (sender, rx) = Webhooks::channel();
                (Some(sender), Some((client, rx)))
            }
            None => (None, None),
        };
        let passwords = PasswordHasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
        )?;
        let state = Arc::new(ServerState {
            storage,
            bus,
            passwords,
            limits: Arc::new(Limits::with_shared(&config, shared_limits)),
            metrics: Metrics::default(),
            webhooks,
            uploads: UploadsInProgress::default(),
            counted_today: CountedToday::default(),
            clock,
            rng: Arc::new(crate::clock::SystemRng),
            config,
        });
        Ok(Self {
            state,
            endpoint,
            fingerprint: identity.fingerprint,
            generated_certificate: identity.generated,
            metrics_listener,
            admin_tls,
            websocket,
            webhook,
            _lock: lock,
        })
    }

    /// The bound UDP address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The bound TCP address of the WebSocket listener (SPEC.md §12.13),
    /// when it is on.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.websocket
            .as_ref()
            .and_then(|w| w.listener.local_addr().ok())
    }

    /// The bound metrics HTTP address, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Lowercase hex SHA-256 of the certificate DER, for clients to pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The server's limits (shared with its connections), e.g. to watch
    /// their `Limits::footprint`. Feature `testing` only.
    #[cfg(feature = "testing")]
    pub fn limits(&self) -> Arc<Limits> {
        Arc::clone(&self.state.limits)
    }

    /// Whether the certificate was generated by this start.
    pub fn generated_certificate(&self) -> bool {
        self.generated_certificate
    }

    /// Serves until `shutdown` resolves or a [`ShutdownHandle`] fires, then
    /// drains connections.
    ///
    /// The accept loop runs as a task on the runtime's workers, not in the
    /// caller's future: under `#[tokio::main]` that future is polled on
    /// the main thread, which every new and every finished connection then
    /// had to wake (a third thread trading the CPU with the workers; 5 % of
    /// the server's time in a login storm was that thread parking).
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) {
        let (handle, rx) = self.handle();
        let mut run = tokio::spawn(self.run(rx));
        let finished = tokio::select! {
            finished = &mut run => finished,
            () = shutdown => {
                handle.shutdown();
                run.await
            }
        };
        // A panic in the loop stays a panic of this call, as before.
        if let Err(error) = finished
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    /// A handle to stop the server and the receiver `run` watches.
    pub fn handle(&self) -> (ShutdownHandle, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (ShutdownHandle { tx: Arc::new(tx) }, rx)
    }

    /// A new connection attempt (SPEC.md §12.12 "Connections"): refused
    /// when its address is blocked or the caps are already reached by open
    /// connections; sent a QUIC Retry when its address is not validated
    /// and [`Limits::wants_retry`]; otherwise its handshake runs under a
    /// handshake slot, and it takes a connection slot only once the
    /// handshake completes (connection.rs), so unanswered Initials, spoofed
    /// or not, never hold a slot.
    fn admit(
        &self,
        incoming: quinn::Incoming,
        connections: &mut JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) {
        let limits = &self.state.limits;
        let refused = |incoming: quinn::Incoming, refusal: Refusal| {
            self.state.metrics.connections_refused.inc();
            if refusal != Refusal::Blocked {
                self.state.metrics.rate_limited("connections");
            }
            tracing::debug!(?refusal, "connection refused");
            incoming.refuse();
        };
        if let Err(refusal) = limits.precheck(incoming.remote_address().ip()) {
            return refused(incoming, refusal);
        }
        if !incoming.remote_address_validated() && incoming.may_retry() && limits.wants_retry() {
            self.state.metrics.quic_retries.inc();
            if let Err(error) = incoming.retry() {
                error.into_incoming().ignore();
            }
            return;
        }
        let Some(handshake) = limits.begin_handshake() else {
            return refused(incoming, Refusal::TooManyConnections);
        };
        connections.spawn(connection::serve(
            Arc::clone(&self.state),
            incoming,
            stop.clone(),
            handshake,
        ));
    }

    /// A new WebSocket TCP connection: the same admission as QUIC (IP
    /// rules and caps before anything is read; refused: closed at once),
    /// then its TLS and WebSocket handshakes under a handshake slot.
    fn admit_websocket(
        &self,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        connections: &mut JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) {
        let limits = &self.state.limits;
        let refusal = match limits.precheck(remote.ip()) {
            Err(refusal) => Some(refusal),
            Ok(()) => match limits.begin_handshake() {
                Some(handshake) => {
                    let tls = self.websocket.as_ref().and_then(|w| w.tls.clone());
                    connections.spawn(websocket::serve(
                        Arc::clone(&self.state),
                        stream,
                        remote,
                        tls,
                        stop.clone(),
                        handshake,
                    ));
                    return;
                }
                None => Some(Refusal::TooManyConnections),
            },
        };
        if let Some(refusal) = refusal {
            self.state.metrics.connections_refused.inc();
            if refusal != Refusal::Blocked {
                self.state.metrics.rate_limited("connections");
            }
            tracing::debug!(?refusal, "websocket connection refused");
            // Dropping the stream closes it: the client sees no TLS and no frame.
            drop(stream);
        }
    }

    /// Serves until `stop` becomes true, then drains connections.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        let mut helpers = JoinSet::new();
        if let Some(ws) = &self.websocket {
            tracing::info!(
                addr = ?ws.listener.local_addr().ok(),
                tls = ws.tls.is_some(),
                "websocket listening (path /v1/ws)"
            );
            crate::web_app::log_presence(&self.state.config.web_app_dir);
        }
        helpers.spawn(queues::purge_loop(Arc::clone(&self.state), stop.clone()));
        // IP deny rules made on the dashboard apply from the first connection on.
        if let Err(error) = crate::admin::ip_rules::refresh(&self.state).await {
            tracing::warn!(%error, "could not load the dashboard's IP rules");
        }
        // Every node tells the others about itself (SPEC.md §18.7 Nodes).
        let rollups = Arc::new(crate::admin::rollups::Rollups::default());
        helpers.spawn(crate::admin::cluster::publish_loop(
            Arc::clone(&self.state),
            Arc::clone(&rollups),
            stop.clone(),
        ));
        helpers.spawn(crate::admin::ip_rules::refresh_loop(
            Arc::clone(&self.state),
            stop.clone(),
        ));
        // Usage analytics are counted on every node, with or without an
        // admin listener (SPEC.md §14.1); the listener's report flushes the
        // same feed before it answers.
        let analytics = Arc::new(crate::admin::analytics::Flusher::default());
        helpers.spawn(crate::admin::analytics::run(
            Arc::clone(&self.state),
            Arc::clone(&analytics),
            stop.clone(),
        ));
        if let Some(listener) = self.metrics_listener.take() {
            helpers.spawn(crate::admin::serve(
                Arc::clone(&self.state),
                listener,
                self.admin_tls.take(),
                analytics,
                rollups,
                stop.clone(),
            ));
        }
        if let Some((client, rx)) = self.webhook.take() {
            helpers.spawn(webhooks::run(
                Arc::clone(&self.state),
                client,
                rx,
                stop.clone(),
            ));
        }
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => self.admit(incoming, &mut connections, &stop),
                    None => break,
                },
                accepted = accept_tcp(self.websocket.as_ref()) => match accepted {
                    Ok((stream, remote)) => {
                        self.admit_websocket(stream, remote, &mut connections, &stop);
                    }
                    Err(error) => {
                        tracing::debug!(%error, "websocket accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stop.changed() => {}
            }
        }
        // No new WebSocket connections either.
        self.websocket = None;
        tracing::info!(
            open = connections.len(),
            "shutting down: draining connections"
        );
        self.endpoint.set_server_config(None);
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "grace period over; closing remaining connections"
            );
            connections.abort_all();
        }
        self.endpoint.close(
            quinn::VarInt::from_u32(microbot_protocol::transport::ErrorCode::Unavailable as u32),
            b"server shutting down",
        );
        while helpers.join_next().await.is_some() {}
        self.endpoint.wait_idle().await;
        tracing::info!("shutdown complete");
    }
}
