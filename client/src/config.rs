//! What an application configures: where the server is (and which
//! certificate to trust), where the local store is (and its passphrase), and
//! the SDK's tunables. Not owned here: how the values are used.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::TransportError;

/// A server to talk to, pinned by the SHA-256 of its certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP address of the server's QUIC endpoint.
    pub addr: SocketAddr,
    /// Name sent as TLS SNI (the certificate itself is pinned, not checked by name).
    pub server_name: String,
    /// SHA-256 of the server's DER certificate (what the server prints at start).
    pub fingerprint: [u8; 32],
}

impl ServerConfig {
    /// A server at `addr` whose certificate has the SHA-256 `fingerprint_hex`
    /// (64 hex digits, as `microbot-server` prints it; ':' separators allowed).
    ///
    /// # Errors
    /// [`TransportError::Config`] when the fingerprint is not 32 bytes of hex.
    pub fn new(addr: SocketAddr, fingerprint_hex: &str) -> Result<Self, TransportError> {
        let cleaned: String = fingerprint_hex
            .chars()
            .filter(|c| !matches!(c, ':' | ' '))
            .collect();
        let bytes = hex::decode(cleaned)
            .map_err(|_| TransportError::Config("certificate fingerprint is not hex".into()))?;
        let fingerprint = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            TransportError::Config("certificate fingerprint must be 32 bytes (SHA-256)".into())
        })?;
        Ok(Self {
            addr,
            server_name: "localhost".to_owned(),
            fingerprint,
        })
    }

    /// The fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("fingerprint", &self.fingerprint_hex())
            .finish()
    }
}

/// Argon2id cost of turning the store passphrase into the store key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
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

/// Where the local store lives and how it is protected.
#[derive(Clone)]
pub struct StoreConfig {
    /// The SQLite file (created on enrolment).
    pub path: PathBuf,
    /// When set, secrets and message bodies are sealed with a key derived
    /// from this passphrase (argon2id). Fixed when the store is created.
    pub passphrase: Option<Zeroizing<String>>,
    /// Cost of the key derivation for a new store (an existing store keeps
    /// the parameters it was created with).
    pub kdf: KdfParams,
}

impl StoreConfig {
    /// An unencrypted store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            passphrase: None,
            kdf: KdfParams::default(),
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
            .field("encrypted", &self.passphrase.is_some())
            .field("kdf", &self.kdf)
            .finish()
    }
}

/// Tunables of a running account.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// How long a contact's device list is trusted before the next send
    /// re-fetches it (to pick up devices added since). `Duration::ZERO`
    /// re-fetches on every send (each fetch consumes one one-time prekey
    /// per device of the contact).
    pub device_refresh: Duration,
    /// One-time prekeys uploaded per batch (at most 1000).
    pub prekey_batch: u32,
    /// First reconnect delay; doubles per failure up to `reconnect_max`,
    /// with up to 50 % random jitter added.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Send a delivery receipt for every text or file received.
    pub delivery_receipts: bool,
    /// Name shown in the account's device list.
    pub device_name: String,
    /// Fault injection for crash-recovery tests: store received messages
    /// but never acknowledge them to the server, as if the process died
    /// between the two steps. Never set this in an application.
    pub fault_skip_ack: bool,
    /// Fault injection for resume tests: close the connection once, the
    /// first time an upload has written this many encrypted bytes, as if
    /// the network dropped; the upload then resumes. Never set this in an
    /// application.
    pub fault_interrupt_upload_at: Option<u64>,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            device_refresh: Duration::from_secs(600),
            prekey_batch: 100,
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(60),
            delivery_receipts: true,
            device_name: "microbot-client".to_owned(),
            fault_skip_ack: false,
            fault_interrupt_upload_at: None,
        }
    }
}
