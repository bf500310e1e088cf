//! What an application configures: where the server is (one address, or
//! the addresses of a cluster's nodes, and which certificate to trust),
//! where the local store is (and its passphrase), and the SDK's tunables.
//! Also the stable spreading of devices over a cluster's addresses
//! (SPEC.md §12.1). Not owned here: how the values are used (the
//! connection loop in sync.rs does the failover).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::TransportError;
use crate::store::backend::{Backend, SuppliedBackend};

/// A server to talk to, pinned by the SHA-256 of its certificate: one
/// address, or the addresses of every node of a cluster (SPEC.md §12.1,
/// §18.6), which all present the same certificate.
///
/// With several addresses a device starts at the one picked by
/// [`ServerConfig::start_index`] (so a population of devices spreads
/// evenly) and moves on by its own stride when a connection fails or is
/// lost (so a dead node's devices spread over the others; SPEC.md §12.1).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP addresses of the server's QUIC endpoints: never empty, no repeats.
    addresses: Vec<SocketAddr>,
    /// Name sent as TLS SNI (the certificate itself is pinned, not checked by name).
    pub server_name: String,
    /// SHA-256 of the server's DER certificate (what the server prints at start).
    pub fingerprint: [u8; 32],
    /// Which transport to use (SPEC.md §12.13); [`Transport::Auto`] by default.
    pub transport: Transport,
}

/// How the SDK reaches the server (SPEC.md §12.1, §12.13). The WebSocket
/// endpoint is `wss://<address>/v1/ws`: the same IP and port number as the
/// QUIC address, on TCP, with the same pinned certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// QUIC only.
    Quic,
    /// WebSocket over TLS only.
    WebSocket,
    /// QUIC first; when it does not answer within a few seconds (UDP
    /// blocked) the WebSocket at the same address, which is then used
    /// first for that address for a while.
    #[default]
    Auto,
}

impl ServerConfig {
    /// A server at `addr` whose certificate has the SHA-256 `fingerprint_hex`
    /// (64 hex digits, as `microbot-server` prints it; ':' separators allowed).
    ///
    /// # Errors
    /// [`TransportError::Config`] when the fingerprint is not 32 bytes of hex.
    pub fn new(addr: SocketAddr, fingerprint_hex: &str) -> Result<Self, TransportError> {
        Ok(Self {
            addresses: vec![addr],
            server_name: "localhost".to_owned(),
            fingerprint: parse_fingerprint(fingerprint_hex)?,
            transport: Transport::Auto,
        })
    }

    /// The same server reached by `transport`.
    #[must_use]
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// A cluster whose nodes listen at `addresses` (any node serves any
    /// device) and all present the certificate with the SHA-256
    /// `fingerprint_hex`. Repeated addresses count once; the order matters
    /// (it is the round-robin order, and the spreading of devices depends
    /// on it), so give every client the same list.
    ///
    /// # Errors
    /// [`TransportError::Config`] when `addresses` is empty or the
    /// fingerprint is not 32 bytes of hex.
    pub fn with_addresses(
        addresses: impl IntoIterator<Item = SocketAddr>,
        fingerprint_hex: &str,
    ) -> Result<Self, TransportError> {
        let addresses = distinct(addresses);
        if addresses.is_empty() {
            return Err(TransportError::Config(
                "at least one server address is needed".into(),
            ));
        }
        Ok(Self {
            addresses,
            server_name: "localhost".to_owned(),
            fingerprint: parse_fingerprint(fingerprint_hex)?,
            transport: Transport::Auto,
        })
    }

    /// The same server with `more` addresses appended (repeats ignored).
    #[must_use]
    pub fn with_fallbacks(mut self, more: impl IntoIterator<Item = SocketAddr>) -> Self {
        let mut all = std::mem::take(&mut self.addresses);
        all.extend(more);
        self.addresses = distinct(all);
        self
    }

    /// A configuration read back from the store; `None` when `addresses`
    /// is empty.
    pub(crate) fn stored(
        addresses: Vec<SocketAddr>,
        server_name: String,
        fingerprint: [u8; 32],
    ) -> Option<Self> {
        let addresses = distinct(addresses);
        (!addresses.is_empty()).then_some(Self {
            addresses,
            server_name,
            fingerprint,
            transport: Transport::Auto,
        })
    }

    /// Every address, in round-robin order (at least one).
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Index into [`ServerConfig::addresses`] where the device `device_id`
    /// of `username` makes its first connection attempt (SPEC.md §12.1):
    /// [`start_index`] over this configuration's address count.
    pub fn start_index(&self, username: &str, device_id: u64) -> usize {
        start_index(username, device_id, self.addresses.len())
    }

    /// The fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

/// Where a device starts among `count` server addresses (SPEC.md §12.1):
/// the first 8 bytes of SHA-256(`username` ‖ 0x00 ‖ `device_id` as 8
/// bytes big-endian), read as a big-endian integer, modulo `count`. Stable
/// for a device and uniform over devices, so every node gets its share.
/// Before enrolment, when there is no device id yet, device id 0 is used.
/// Returns 0 when `count` is 0.
pub fn start_index(username: &str, device_id: u64, count: usize) -> usize {
    let mut hash = Sha256::new();
    hash.update(username.as_bytes());
    hash.update([0u8]);
    hash.update(device_id.to_be_bytes());
    let digest = hash.finalize();
    let value = u64::from_be_bytes(digest.first_chunk::<8>().copied().unwrap_or_default());
    match u64::try_from(count) {
        Ok(0) | Err(_) => 0,
        Ok(count) => usize::try_from(value % count).unwrap_or(0),
    }
}

fn distinct(addresses: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in addresses {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn parse_fingerprint(fingerprint_hex: &str) -> Result<[u8; 32], TransportError> {
    let cleaned: String = fingerprint_hex
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect();
    let bytes = hex::decode(cleaned)
        .map_err(|_| TransportError::Config("certificate fingerprint is not hex".into()))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        TransportError::Config("certificate fingerprint must be 32 bytes (SHA-256)".into())
    })
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addresses", &self.addresses)
            .field("server_name", &self.server_name)
            .field("fingerprint", &self.fingerprint_hex())
            .field("transport", &self.transport)
            .finish()
    }
}

/// Argon2id cost of turning the store passphrase into the store key.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// Argon2id with `memory_kib` KiB of memory, `iterations` passes and
    /// `parallelism` lanes (checked when the store is opened).
    pub const fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Self {
        Self {
            memory_kib,
            iterations,
            parallelism,
        }
    }
}

impl Default for KdfParams {
    /// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Where the local store lives and how it is protected: a SQLite file
/// ([`StoreConfig::new`]), memory only ([`StoreConfig::in_memory`]), or the
/// application's own storage backend ([`StoreConfig::from_backend`]).
#[non_exhaustive]
#[derive(Clone)]
pub struct StoreConfig {
    /// The SQLite file (created on enrolment); for a store in memory, a
    /// name for messages only; for an application's backend, the
    /// directory of the staging copies of queued files.
    pub path: PathBuf,
    /// The store lives in memory only: nothing of it is written to disk
    /// but the encrypted staging copies of queued files (in a temporary
    /// directory removed with the store). It is gone when the account is
    /// dropped and cannot be opened again: for tests and throwaway bots.
    pub in_memory: bool,
    /// When set, secrets and message bodies are sealed with a key derived
    /// from this passphrase (argon2id). Fixed when the store is created.
    pub passphrase: Option<Zeroizing<String>>,
    /// Cost of the key derivation for a new store (an existing store keeps
    /// the parameters it was created with).
    pub kdf: KdfParams,
    /// The application's backend ([`StoreConfig::from_backend`]), shared
    /// by the clones of this configuration.
    pub(crate) backend: Option<SuppliedBackend>,
}

impl StoreConfig {
    /// An unencrypted store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            in_memory: false,
            passphrase: None,
            kdf: KdfParams::default(),
            backend: None,
        }
    }

    /// A store in memory only ([`StoreConfig::in_memory`](Self#structfield.in_memory)):
    /// [`crate::Account::enrol`] creates it, and it ends with the account.
    pub fn in_memory() -> Self {
        Self {
            path: PathBuf::from(":memory:"),
            in_memory: true,
            passphrase: None,
            kdf: KdfParams::default(),
            backend: None,
        }
    }

    /// A store kept by the application's own storage `backend` (see
    /// [`crate::store`] for what a backend is given: with a passphrase
    /// set, only sealed blobs plus plain index fields).
    /// [`crate::Account::enrol`] and [`crate::Account::open`] run over it;
    /// one account at a time (a second one opening it while the first
    /// still runs gets [`crate::OpenError::InUse`]), and every clone of
    /// this configuration names the same backend.
    ///
    /// `staging_dir` is where the encrypted staging copies of queued files
    /// are kept until uploaded (created when needed; give each store its
    /// own directory, and keep it when the backend's data is kept, so
    /// queued files survive a restart). A failed enrolment may leave the
    /// store's protection (salt and key check) in the backend.
    pub fn from_backend(backend: impl Backend + 'static, staging_dir: impl Into<PathBuf>) -> Self {
        Self {
            path: staging_dir.into(),
            in_memory: false,
            passphrase: None,
            kdf: KdfParams::default(),
            backend: Some(SuppliedBackend::new(Box::new(backend))),
        }
    }

    /// The same store, encrypted at rest with `passphrase`.
    pub fn with_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(Zeroizing::new(passphrase.into()));
        self
    }

    /// The same store with other key-derivation costs.
    pub fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("path", &self.path)
            .field("in_memory", &self.in_memory)
            .field("own_backend", &self.backend.is_some())
            .field("encrypted", &self.passphrase.is_some())
            .field("kdf", &self.kdf)
            .finish()
    }
}

/// Tunables of a running account.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// How long a contact's device list is trusted before the next send
    /// re-fetches it (to pick up devices added since). `Duration::ZERO`
    /// re-fetches on every send (each fetch consumes one one-time prekey
    /// per device of the contact).
    pub device_refresh: Duration,
    /// One-time prekeys uploaded per batch (at most 1000).
    pub prekey_batch: u32,
    /// First reconnect delay, waited once every address of the server has
    /// failed in a row; doubles per such round up to `reconnect_max`, with
    /// up to 50 % random jitter added. A successful login resets it.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Longest wait for one address's handshake; then the next address
    /// of [`ServerConfig::addresses`] is tried. With [`Transport::Auto`]
    /// QUIC gets at most 3 s of it and the WebSocket fallback the rest
    /// (at least half).
    pub connect_timeout: Duration,
    /// Send a delivery receipt for every text or file received.
    pub delivery_receipts: bool,
    /// Name shown in the account's device list.
    pub device_name: String,
    /// Send 1:1 messages sealed (SPEC.md §19) to contacts whose profile key
    /// we hold; off: every send names its sender to the server.
    pub sealed_sender: bool,
    /// Accept sealed sends from anyone, not only from holders of this
    /// account's profile key (SPEC.md §19.7). Off by default.
    pub allow_unidentified_from_anyone: bool,
    /// Faults the crate's own tests inject; never set by an application
    /// (see [`crate::fault_injection`]).
    pub(crate) faults: Faults,
}

/// Faults injected by tests through [`crate::fault_injection`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// Store received messages but never acknowledge them to the server,
    /// as if the process died between the two steps.
    pub(crate) skip_ack: bool,
    /// Close the connection once, the first time an upload has written
    /// this many encrypted bytes, as if the network dropped.
    pub(crate) interrupt_upload_at: Option<u64>,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            device_refresh: Duration::from_secs(600),
            prekey_batch: 100,
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            delivery_receipts: true,
            device_name: "microbot-client".to_owned(),
            sealed_sender: true,
            allow_unidentified_from_anyone: false,
            faults: Faults::default(),
        }
    }
}
