//! Server configuration (SPEC.md §12.1 "Deployment").
//!
//! Precedence, lowest first: built-in defaults < TOML config file
//! (`--config FILE`, or `MICROBOT_CONFIG`) < environment variables
//! `MICROBOT_*` < command-line flags. Flags and environment variables are one
//! clap argument each (clap reads the variable when the flag is absent), so
//! `--help` lists both.
//!
//! Not owned here: what the values mean at run time (each module documents
//! its own limit).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;

/// Default UDP listen address: loopback only, so a server started without
/// configuration is not exposed. Deployments set `--listen 0.0.0.0:7447`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7447";

mod secret;
mod secret_url;
mod websocket;
pub use secret::Secret;
pub use secret_url::SecretUrl;
pub use websocket::WsListen;

/// Where the durable state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageBackend {
    /// `microbot.sqlite3` in the data directory (the default).
    Sqlite,
    /// A PostgreSQL database shared by every node.
    Postgres(SecretUrl),
}

/// The complete, resolved configuration of one server.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding `microbot.sqlite3` and the generated certificate.
    pub data_dir: PathBuf,
    /// UDP address the QUIC endpoint binds (port 0: any free port).
    pub listen: SocketAddr,
    /// PEM certificate chain to serve instead of the generated one.
    pub cert_pem: Option<PathBuf>,
    /// PEM private key matching `cert_pem`.
    pub key_pem: Option<PathBuf>,
    /// DNS name put in the generated certificate.
    pub server_name: String,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    pub argon2_iterations: u32,
    /// Argon2id parallelism.
    pub argon2_parallelism: u32,
    /// TOTP steps accepted either side of the current one.
    pub totp_skew_steps: u8,
    /// Most envelopes queued for one device.
    pub max_queue_len: u32,
    /// Percent of `max_queue_len` one sender account may fill in one
    /// device's queue (1..=100).
    pub queue_sender_share_percent: u32,
    /// Seconds after which a queued envelope is purged.
    pub envelope_ttl_secs: u64,
    /// Seconds between two sweeps that delete expired envelopes.
    pub purge_interval_secs: u64,
    /// Seconds after which an account never confirmed is deleted and its
    /// username is free again (0: never).
    pub unconfirmed_account_ttl_secs: u64,
    /// Largest ciphertext of one envelope, in bytes.
    pub max_envelope_len: u32,
    /// A low-stock push is sent when a device has fewer one-time prekeys.
    pub prekey_low_stock_threshold: u32,
    /// Largest frame body accepted or sent, in bytes.
    pub max_frame_len: u32,
    /// Seconds a draining shutdown waits for connections to finish.
    pub shutdown_grace_secs: u64,
    /// Most members of one group.
    pub max_group_members: u32,
    /// Most groups one account may have created that still exist (a group
    /// counts until its last member leaves).
    pub max_groups_per_account: u32,
    /// Group changes (create, add, remove, role, metadata) per minute per account (0: off).
    pub rate_group_change_per_account: u32,
    /// Group changes per minute per group (0: off).
    pub rate_group_change_per_group: u32,
    /// Most unused one-time X25519 prekeys stored per device.
    pub max_one_time_prekeys: u32,
    /// Most unused one-time KEM prekeys stored per device.
    pub max_kem_prekeys: u32,
    /// Prekey uploads per minute per account (0: off).
    pub rate_prekey_upload_per_account: u32,
    /// Prekey fetches per minute per (fetching account, fetched account) (0: off).
    pub rate_prekey_fetch_per_target: u32,
    /// Largest attachment (encrypted size) in bytes.
    pub max_attachment_len: u64,
    /// Bytes of unexpired attachments one account may hold (0: no quota).
    pub attachment_quota_bytes: u64,
    /// Seconds after creation at which an attachment expires and is purged.
    pub attachment_ttl_secs: u64,
    /// Upload bytes between two fsync + offset commits.
    pub attachment_commit_interval_bytes: u64,
    /// Login and credential attempts per minute per IP (0: off).
    pub rate_login_per_ip: u32,
    /// Credential attempts per minute per account (0: off).
    pub rate_login_per_account: u32,
    /// Registrations per minute per IP (0: off).
    pub rate_register_per_ip: u32,
    /// Send and group-send requests per minute per account (0: off).
    pub rate_send_per_account: u32,
    /// Prekey fetches per minute per account (0: off).
    pub rate_prekey_fetch_per_account: u32,
    /// Lifetime of a sender certificate (SPEC.md §19.6), 1..=604800 s.
    pub sender_certificate_ttl_secs: u64,
    /// Attachment upload requests per minute per account (0: off).
    pub rate_upload_per_account: u32,
    /// Failed credential checks in a row before an account is locked.
    pub login_backoff_after_failures: u32,
    /// First lock duration; doubles with every further failure.
    pub login_backoff_base_ms: u64,
    /// Longest lock duration.
    pub login_backoff_max_ms: u64,
    /// Most open connections in total.
    pub max_connections: u32,
    /// Most open connections from one IP address.
    pub max_connections_per_ip: u32,
    /// QUIC idle timeout offered to clients, seconds.
    pub idle_timeout_secs: u64,
    /// Seconds a QUIC handshake may take before it is abandoned.
    pub handshake_timeout_secs: u64,
    /// Handshakes in progress from which a client whose address is not yet
    /// validated must first answer a QUIC Retry (0: always).
    pub retry_above_handshakes: u32,
    /// Seconds after Hello, or after the last successful register,
    /// confirm or enrol, within which a connection must log in.
    pub login_timeout_secs: u64,
    /// Seconds a started frame (or an attachment stream's header) may take
    /// to arrive in full.
    pub frame_timeout_secs: u64,
    /// Time one webhook attempt may take.
    pub webhook_timeout_ms: u64,
    /// Retries of a failed webhook notification.
    pub webhook_retries: u32,
    /// First webhook retry delay; doubles with every retry.
    pub webhook_backoff_base_ms: u64,
    /// If not empty, only these CIDR blocks may connect.
    pub allow_ips: Vec<IpNet>,
    /// CIDR blocks refused (checked before `allow_ips`).
    pub deny_ips: Vec<IpNet>,
    /// TCP address of the admin listener: `/metrics`, `/healthz`, `/readyz`
    /// and the dashboard under `/admin/` (off when unset; plain HTTP on
    /// loopback, HTTPS with the server certificate elsewhere).
    pub metrics_listen: Option<SocketAddr>,
    /// Directory of the built dashboard (`web/dashboard/dist`) served under
    /// `/admin/` on the admin listener (unset: no dashboard files).
    pub admin_dashboard_dir: Option<PathBuf>,
    /// `http(s)://host[:port]/path` receiving content-free POSTs for
    /// offline devices (off when unset; SPEC.md §18.5).
    pub webhook_url: Option<String>,
    /// Let webhooks go to loopback, private, link-local and other internal
    /// addresses (off: such a URL, or a name resolving only to such
    /// addresses, is refused).
    pub webhook_allow_private: bool,
    /// Key of the HMAC-SHA256 signature in `X-Microbot-Signature` (unset:
    /// notices are not signed).
    pub webhook_secret: Option<Secret>,
    /// PEM file of extra CA certificates trusted for `https://` webhooks,
    /// besides the Mozilla roots.
    pub webhook_ca_pem: Option<PathBuf>,
    /// `"sqlite"` (default: the file in `data_dir`) or a
    /// `postgres://user:password@host:port/db` URL shared by every node.
    pub storage: Option<SecretUrl>,
    /// Most PostgreSQL connections of this node.
    pub storage_pool_size: u32,
    /// `redis://host:port/` (one Redis) or
    /// `redis+cluster://host:port,host:port/` (a Redis Cluster's seed
    /// nodes) for the cross-node bus and shared limits (unset: in-process
    /// bus, per-node limits).
    pub redis: Option<SecretUrl>,
    /// Prefix of every Redis key and channel (one per cluster).
    pub redis_namespace: String,
    /// Directory of attachment files (default `<data_dir>/attachments`);
    /// every node of a cluster must see the same one.
    pub attachments_dir: Option<PathBuf>,
    /// WebSocket listener (SPEC.md §12.13): unset = TCP on `listen`'s
    /// address and port number; `"off"`; or a TCP `ip:port`.
    pub ws_listen: Option<String>,
    /// Serve plain `ws://` instead of TLS: only on a loopback address, or
    /// with `ws_tls_proxy` (a TLS-terminating proxy in front).
    pub ws_plain: bool,
    /// The operator states that a TLS-terminating proxy is in front of the
    /// WebSocket listener (allows `ws_plain` on any address).
    pub ws_tls_proxy: bool,
    /// Directory of the built web app served at `/` on the TCP listener
    /// (SPEC.md §12.16); relative paths are from the working directory.
    pub web_app_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("microbot-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7447)),
            cert_pem: None,
            key_pem: None,
            server_name: "localhost".to_owned(),
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            totp_skew_steps: 1,
            max_queue_len: 10_000,
            queue_sender_share_percent: 10,
            envelope_ttl_secs: 30 * 24 * 3600,
            purge_interval_secs: 60,
            unconfirmed_account_ttl_secs: 24 * 3600,
            max_envelope_len: 256 * 1024,
            prekey_low_stock_threshold: 10,
            max_frame_len: 1024 * 1024,
            shutdown_grace_secs: 10,
            max_group_members: 1000,
            max_groups_per_account: 500,
            rate_group_change_per_account: 60,
            rate_group_change_per_group: 30,
            max_one_time_prekeys: 2000,
            max_kem_prekeys: 200,
            rate_prekey_upload_per_account: 30,
            rate_prekey_fetch_per_target: 10,
            max_attachment_len: 100 * 1024 * 1024,
            attachment_quota_bytes: 1024 * 1024 * 1024,
            attachment_ttl_secs: 30 * 24 * 3600,
            attachment_commit_interval_bytes: 4 * 1024 * 1024,
            rate_login_per_ip: 60,
            rate_login_per_account: 20,
            rate_register_per_ip: 10,
            rate_send_per_account: 1200,
            sender_certificate_ttl_secs: 24 * 60 * 60,
            rate_prekey_fetch_per_account: 300,
            rate_upload_per_account: 60,
            login_backoff_after_failures: 3,
            login_backoff_base_ms: 1000,
            login_backoff_max_ms: 15 * 60 * 1000,
            max_connections: 10_000,
            max_connections_per_ip: 64,
            idle_timeout_secs: 60,
            handshake_timeout_secs: 5,
            retry_above_handshakes: 0,
            login_timeout_secs: 30,
            frame_timeout_secs: 20,
            webhook_timeout_ms: 5000,
            webhook_retries: 5,
            webhook_backoff_base_ms: 500,
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            metrics_listen: None,
            admin_dashboard_dir: None,
            webhook_url: None,
            webhook_allow_private: false,
            webhook_secret: None,
            webhook_ca_pem: None,
            storage: None,
            storage_pool_size: 16,
            redis: None,
            redis_namespace: "microbot".to_owned(),
            attachments_dir: None,
            ws_listen: None,
            ws_plain: false,
            ws_tls_proxy: false,
            web_app_dir: PathBuf::from("web/app/dist"),
        }
    }
}

/// Errors resolving the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for [`Config`].
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
    /// `webhook_url` cannot be used.
    #[error("invalid configuration: {0}")]
    Webhook(#[from] crate::webhooks::BadWebhookUrl),
    /// The webhook client cannot be built (`webhook_ca_pem`...).
    #[error("invalid configuration: {0}")]
    WebhookClient(#[from] crate::webhooks::ClientError),
}

/// Overrides from flags and `MICROBOT_*` environment variables.
#[derive(Args, Clone, Debug, Default)]
pub struct Overrides {
    /// TOML config file (keys are the long flag names with '_' for '-').
    #[arg(long, env = "MICROBOT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (database, generated certificate) [default: microbot-data].
    #[arg(long, env = "MICROBOT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// UDP listen address [default: 127.0.0.1:7447].
    #[arg(long, env = "MICROBOT_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain to use instead of the generated self-signed one.
    #[arg(long, env = "MICROBOT_CERT_PEM", global = true, requires = "key_pem")]
    pub cert_pem: Option<PathBuf>,
    /// PEM private key for --cert-pem.
    #[arg(long, env = "MICROBOT_KEY_PEM", global = true, requires = "cert_pem")]
    pub key_pem: Option<PathBuf>,
    /// DNS name in the generated certificate [default: localhost].
    #[arg(long, env = "MICROBOT_SERVER_NAME", global = true)]
    pub server_name: Option<String>,
    /// Argon2id memory cost in KiB [default: 19456].
    #[arg(long, env = "MICROBOT_ARGON2_MEMORY_KIB", global = true)]
    pub argon2_memory_kib: Option<u32>,
    /// Argon2id iterations [default: 2].
    #[arg(long, env = "MICROBOT_ARGON2_ITERATIONS", global = true)]
    pub argon2_iterations: Option<u32>,
    /// Argon2id parallelism [default: 1].
    #[arg(long, env = "MICROBOT_ARGON2_PARALLELISM", global = true)]
    pub argon2_parallelism: Option<u32>,
    /// TOTP steps accepted either side of the current one [default: 1].
    #[arg(long, env = "MICROBOT_TOTP_SKEW_STEPS", global = true)]
    pub totp_skew_steps: Option<u8>,
    /// Most envelopes queued per device [default: 10000].
    #[arg(long, env = "MICROBOT_MAX_QUEUE_LEN", global = true)]
    pub max_queue_len: Option<u32>,
    /// Percent of a device queue one sender may fill, 1..=100 [default: 10].
    #[arg(long, env = "MICROBOT_QUEUE_SENDER_SHARE_PERCENT", global = true)]
    pub queue_sender_share_percent: Option<u32>,
    /// Envelope time-to-live in seconds [default: 2592000 = 30 days].
    #[arg(long, env = "MICROBOT_ENVELOPE_TTL_SECS", global = true)]
    pub envelope_ttl_secs: Option<u64>,
    /// Seconds between sweeps of expired envelopes [default: 60].
    #[arg(long, env = "MICROBOT_PURGE_INTERVAL_SECS", global = true)]
    pub purge_interval_secs: Option<u64>,
    /// Seconds after which an unconfirmed account is deleted, freeing its
    /// username; 0 = never [default: 86400].
    #[arg(long, env = "MICROBOT_UNCONFIRMED_ACCOUNT_TTL_SECS", global = true)]
    pub unconfirmed_account_ttl_secs: Option<u64>,
    /// Largest envelope ciphertext in bytes [default: 262144].
    #[arg(long, env = "MICROBOT_MAX_ENVELOPE_LEN", global = true)]
    pub max_envelope_len: Option<u32>,
    /// One-time prekey stock below which a low-stock push is sent [default: 10].
    #[arg(long, env = "MICROBOT_PREKEY_LOW_STOCK_THRESHOLD", global = true)]
    pub prekey_low_stock_threshold: Option<u32>,
    /// Largest frame body in bytes [default: 1048576].
    #[arg(long, env = "MICROBOT_MAX_FRAME_LEN", global = true)]
    pub max_frame_len: Option<u32>,
    /// Seconds a shutdown waits for connections to drain [default: 10].
    #[arg(long, env = "MICROBOT_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
    /// Most members of one group [default: 1000].
    #[arg(long, env = "MICROBOT_MAX_GROUP_MEMBERS", global = true)]
    pub max_group_members: Option<u32>,
    /// Existing groups one account may have created [default: 500].
    #[arg(long, env = "MICROBOT_MAX_GROUPS_PER_ACCOUNT", global = true)]
    pub max_groups_per_account: Option<u32>,
    /// Group changes per minute per account, 0 = off [default: 60].
    #[arg(long, env = "MICROBOT_RATE_GROUP_CHANGE_PER_ACCOUNT", global = true)]
    pub rate_group_change_per_account: Option<u32>,
    /// Group changes per minute per group, 0 = off [default: 30].
    #[arg(long, env = "MICROBOT_RATE_GROUP_CHANGE_PER_GROUP", global = true)]
    pub rate_group_change_per_group: Option<u32>,
    /// Unused one-time prekeys stored per device [default: 2000].
    #[arg(long, env = "MICROBOT_MAX_ONE_TIME_PREKEYS", global = true)]
    pub max_one_time_prekeys: Option<u32>,
    /// Unused one-time KEM prekeys stored per device [default: 200].
    #[arg(long, env = "MICROBOT_MAX_KEM_PREKEYS", global = true)]
    pub max_kem_prekeys: Option<u32>,
    /// Prekey uploads per minute per account, 0 = off [default: 30].
    #[arg(long, env = "MICROBOT_RATE_PREKEY_UPLOAD_PER_ACCOUNT", global = true)]
    pub rate_prekey_upload_per_account: Option<u32>,
    /// Prekey fetches per minute per (fetcher, fetched account), 0 = off [default: 10].
    #[arg(long, env = "MICROBOT_RATE_PREKEY_FETCH_PER_TARGET", global = true)]
    pub rate_prekey_fetch_per_target: Option<u32>,
    /// Largest attachment in bytes [default: 104857600].
    #[arg(long, env = "MICROBOT_MAX_ATTACHMENT_LEN", global = true)]
    pub max_attachment_len: Option<u64>,
    /// Per-account attachment quota in bytes, 0 = none [default: 1073741824].
    #[arg(long, env = "MICROBOT_ATTACHMENT_QUOTA_BYTES", global = true)]
    pub attachment_quota_bytes: Option<u64>,
    /// Attachment time-to-live in seconds [default: 2592000].
    #[arg(long, env = "MICROBOT_ATTACHMENT_TTL_SECS", global = true)]
    pub attachment_ttl_secs: Option<u64>,
    /// Upload bytes between two durable commits [default: 4194304].
    #[arg(long, env = "MICROBOT_ATTACHMENT_COMMIT_INTERVAL_BYTES", global = true)]
    pub attachment_commit_interval_bytes: Option<u64>,
    /// Login attempts per minute per IP, 0 = off [default: 60].
    #[arg(long, env = "MICROBOT_RATE_LOGIN_PER_IP", global = true)]
    pub rate_login_per_ip: Option<u32>,
    /// Credential attempts per minute per account, 0 = off [default: 20].
    #[arg(long, env = "MICROBOT_RATE_LOGIN_PER_ACCOUNT", global = true)]
    pub rate_login_per_account: Option<u32>,
    /// Registrations per minute per IP, 0 = off [default: 10].
    #[arg(long, env = "MICROBOT_RATE_REGISTER_PER_IP", global = true)]
    pub rate_register_per_ip: Option<u32>,
    /// Sends per minute per account, 0 = off [default: 1200].
    #[arg(long, env = "MICROBOT_RATE_SEND_PER_ACCOUNT", global = true)]
    pub rate_send_per_account: Option<u32>,
    /// Sender certificate lifetime in seconds, 1..=604800 [default: 86400].
    #[arg(long, env = "MICROBOT_SENDER_CERTIFICATE_TTL_SECS", global = true)]
    pub sender_certificate_ttl_secs: Option<u64>,
    /// Prekey fetches per minute per account, 0 = off [default: 300].
    #[arg(long, env = "MICROBOT_RATE_PREKEY_FETCH_PER_ACCOUNT", global = true)]
    pub rate_prekey_fetch_per_account: Option<u32>,
    /// Upload requests per minute per account, 0 = off [default: 60].
    #[arg(long, env = "MICROBOT_RATE_UPLOAD_PER_ACCOUNT", global = true)]
    pub rate_upload_per_account: Option<u32>,
    /// Failed credential checks before back-off starts [default: 3].
    #[arg(long, env = "MICROBOT_LOGIN_BACKOFF_AFTER_FAILURES", global = true)]
    pub login_backoff_after_failures: Option<u32>,
    /// First back-off in ms, doubling per failure [default: 1000].
    #[arg(long, env = "MICROBOT_LOGIN_BACKOFF_BASE_MS", global = true)]
    pub login_backoff_base_ms: Option<u64>,
    /// Longest back-off in ms [default: 900000].
    #[arg(long, env = "MICROBOT_LOGIN_BACKOFF_MAX_MS", global = true)]
    pub login_backoff_max_ms: Option<u64>,
    /// Most open connections [default: 10000].
    #[arg(long, env = "MICROBOT_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<u32>,
    /// Most open connections per IP [default: 64].
    #[arg(long, env = "MICROBOT_MAX_CONNECTIONS_PER_IP", global = true)]
    pub max_connections_per_ip: Option<u32>,
    /// QUIC idle timeout in seconds [default: 60].
    #[arg(long, env = "MICROBOT_IDLE_TIMEOUT_SECS", global = true)]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds a QUIC handshake may take, 1..=60 [default: 5].
    #[arg(long, env = "MICROBOT_HANDSHAKE_TIMEOUT_SECS", global = true)]
    pub handshake_timeout_secs: Option<u64>,
    /// Handshakes in progress from which unvalidated addresses get a QUIC
    /// Retry first, 0 = always [default: 0].
    #[arg(long, env = "MICROBOT_RETRY_ABOVE_HANDSHAKES", global = true)]
    pub retry_above_handshakes: Option<u32>,
    /// Seconds after Hello (or the last successful register, confirm or enrol) within which
    /// a connection must log in, 1..=3600 [default: 30].
    #[arg(long, env = "MICROBOT_LOGIN_TIMEOUT_SECS", global = true)]
    pub login_timeout_secs: Option<u64>,
    /// Seconds a started frame or attachment stream header may take, 1..=3600 [default: 20].
    #[arg(long, env = "MICROBOT_FRAME_TIMEOUT_SECS", global = true)]
    pub frame_timeout_secs: Option<u64>,
    /// Webhook request timeout in ms [default: 5000].
    #[arg(long, env = "MICROBOT_WEBHOOK_TIMEOUT_MS", global = true)]
    pub webhook_timeout_ms: Option<u64>,
    /// Webhook retries [default: 5].
    #[arg(long, env = "MICROBOT_WEBHOOK_RETRIES", global = true)]
    pub webhook_retries: Option<u32>,
    /// First webhook retry delay in ms [default: 500].
    #[arg(long, env = "MICROBOT_WEBHOOK_BACKOFF_BASE_MS", global = true)]
    pub webhook_backoff_base_ms: Option<u64>,
    /// CIDR blocks allowed to connect (comma-separated; empty = all).
    #[arg(long, env = "MICROBOT_ALLOW_IPS", global = true, value_delimiter = ',')]
    pub allow_ips: Vec<IpNet>,
    /// CIDR blocks refused (comma-separated).
    #[arg(long, env = "MICROBOT_DENY_IPS", global = true, value_delimiter = ',')]
    pub deny_ips: Vec<IpNet>,
    /// Metrics HTTP address, e.g. 127.0.0.1:9747 [default: off].
    #[arg(long, env = "MICROBOT_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Built dashboard directory served under /admin/ on --metrics-listen [default: none].
    #[arg(long, env = "MICROBOT_ADMIN_DASHBOARD_DIR", global = true)]
    pub admin_dashboard_dir: Option<PathBuf>,
    /// Webhook URL (http:// or https://) for offline-device notifications [default: off].
    #[arg(long, env = "MICROBOT_WEBHOOK_URL", global = true)]
    pub webhook_url: Option<String>,
    /// Allow webhooks to internal (loopback, private, link-local) addresses [default: false].
    #[arg(long, env = "MICROBOT_WEBHOOK_ALLOW_PRIVATE", global = true)]
    pub webhook_allow_private: Option<bool>,
    /// HMAC-SHA256 key signing webhook bodies (X-Microbot-Signature) [default: unsigned].
    #[arg(
        long,
        env = "MICROBOT_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub webhook_secret: Option<Secret>,
    /// PEM file of extra CA certificates for https:// webhooks [default: Mozilla roots only].
    #[arg(long, env = "MICROBOT_WEBHOOK_CA_PEM", global = true)]
    pub webhook_ca_pem: Option<PathBuf>,
    /// "sqlite" or postgres://user:password@host:port/db [default: sqlite].
    #[arg(long, env = "MICROBOT_STORAGE", global = true, hide_env_values = true)]
    pub storage: Option<SecretUrl>,
    /// Most PostgreSQL connections of this node [default: 16].
    #[arg(long, env = "MICROBOT_STORAGE_POOL_SIZE", global = true)]
    pub storage_pool_size: Option<u32>,
    /// redis://host:port/ or redis+cluster://host:port,host:port/ for the
    /// cluster bus and shared limits [default: off].
    #[arg(long, env = "MICROBOT_REDIS", global = true, hide_env_values = true)]
    pub redis: Option<SecretUrl>,
    /// Prefix of Redis keys and channels [default: microbot].
    #[arg(long, env = "MICROBOT_REDIS_NAMESPACE", global = true)]
    pub redis_namespace: Option<String>,
    /// Attachment directory, shared by all nodes [default: DATA_DIR/attachments].
    #[arg(long, env = "MICROBOT_ATTACHMENTS_DIR", global = true)]
    pub attachments_dir: Option<PathBuf>,
    /// WebSocket listener: "off", or a TCP ip:port [default: the QUIC address and port, on TCP].
    #[arg(long, env = "MICROBOT_WS_LISTEN", global = true)]
    pub ws_listen: Option<String>,
    /// Serve plain ws:// (loopback only, unless --ws-tls-proxy) [default: false].
    #[arg(long, env = "MICROBOT_WS_PLAIN", global = true)]
    pub ws_plain: Option<bool>,
    /// A TLS-terminating proxy is in front of the WebSocket listener [default: false].
    #[arg(long, env = "MICROBOT_WS_TLS_PROXY", global = true)]
    pub ws_tls_proxy: Option<bool>,
    /// Directory of the built web app served at / [default: web/app/dist].
    #[arg(long, env = "MICROBOT_WEB_APP_DIR", global = true)]
    pub web_app_dir: Option<PathBuf>,
}

impl Config {
    /// Reads a TOML config file over the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text over the defaults (missing keys keep their default).
    ///
    /// # Errors
    /// The TOML error, also for unknown keys.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Resolves defaults < file named by `overrides.config` < overrides.
    ///
    /// # Errors
    /// File errors and [`ConfigError::Invalid`] for out-of-range values.
    pub fn resolve(overrides: &Overrides) -> Result<Self, ConfigError> {
        let base = match &overrides.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        let config = base.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Applies every override that is set.
    #[must_use]
    pub fn apply(mut self, o: &Overrides) -> Self {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        set(&mut self.data_dir, &o.data_dir);
        set(&mut self.listen, &o.listen);
        if o.cert_pem.is_some() {
            self.cert_pem.clone_from(&o.cert_pem);
        }
        if o.key_pem.is_some() {
            self.key_pem.clone_from(&o.key_pem);
        }
        set(&mut self.server_name, &o.server_name);
        set(&mut self.argon2_memory_kib, &o.argon2_memory_kib);
        set(&mut self.argon2_iterations, &o.argon2_iterations);
        set(&mut self.argon2_parallelism, &o.argon2_parallelism);
        set(&mut self.totp_skew_steps, &o.totp_skew_steps);
        set(&mut self.max_queue_len, &o.max_queue_len);
        set(
            &mut self.queue_sender_share_percent,
            &o.queue_sender_share_percent,
        );
        set(&mut self.envelope_ttl_secs, &o.envelope_ttl_secs);
        set(&mut self.purge_interval_secs, &o.purge_interval_secs);
        set(
            &mut self.unconfirmed_account_ttl_secs,
            &o.unconfirmed_account_ttl_secs,
        );
        set(&mut self.max_envelope_len, &o.max_envelope_len);
        set(
            &mut self.prekey_low_stock_threshold,
            &o.prekey_low_stock_threshold,
        );
        set(&mut self.max_frame_len, &o.max_frame_len);
        set(&mut self.shutdown_grace_secs, &o.shutdown_grace_secs);
        set(&mut self.max_group_members, &o.max_group_members);
        set(&mut self.max_groups_per_account, &o.max_groups_per_account);
        set(
            &mut self.rate_group_change_per_account,
            &o.rate_group_change_per_account,
        );
        set(
            &mut self.rate_group_change_per_group,
            &o.rate_group_change_per_group,
        );
        set(&mut self.max_one_time_prekeys, &o.max_one_time_prekeys);
        set(&mut self.max_kem_prekeys, &o.max_kem_prekeys);
        set(
            &mut self.rate_prekey_upload_per_account,
            &o.rate_prekey_upload_per_account,
        );
        set(
            &mut self.rate_prekey_fetch_per_target,
            &o.rate_prekey_fetch_per_target,
        );
        set(&mut self.max_attachment_len, &o.max_attachment_len);
        set(&mut self.attachment_quota_bytes, &o.attachment_quota_bytes);
        set(&mut self.attachment_ttl_secs, &o.attachment_ttl_secs);
        set(
            &mut self.attachment_commit_interval_bytes,
            &o.attachment_commit_interval_bytes,
        );
        set(&mut self.rate_login_per_ip, &o.rate_login_per_ip);
        set(&mut self.rate_login_per_account, &o.rate_login_per_account);
        set(&mut self.rate_register_per_ip, &o.rate_register_per_ip);
        set(&mut self.rate_send_per_account, &o.rate_send_per_account);
        set(
            &mut self.sender_certificate_ttl_secs,
            &o.sender_certificate_ttl_secs,
        );
        set(
            &mut self.rate_prekey_fetch_per_account,
            &o.rate_prekey_fetch_per_account,
        );
        set(
            &mut self.rate_upload_per_account,
            &o.rate_upload_per_account,
        );
        set(
            &mut self.login_backoff_after_failures,
            &o.login_backoff_after_failures,
        );
        set(&mut self.login_backoff_base_ms, &o.login_backoff_base_ms);
        set(&mut self.login_backoff_max_ms, &o.login_backoff_max_ms);
        set(&mut self.max_connections, &o.max_connections);
        set(&mut self.max_connections_per_ip, &o.max_connections_per_ip);
        set(&mut self.idle_timeout_secs, &o.idle_timeout_secs);
        set(&mut self.handshake_timeout_secs, &o.handshake_timeout_secs);
        set(&mut self.retry_above_handshakes, &o.retry_above_handshakes);
        set(&mut self.login_timeout_secs, &o.login_timeout_secs);
        set(&mut self.frame_timeout_secs, &o.frame_timeout_secs);
        set(&mut self.webhook_timeout_ms, &o.webhook_timeout_ms);
        set(&mut self.webhook_retries, &o.webhook_retries);
        set(
            &mut self.webhook_backoff_base_ms,
            &o.webhook_backoff_base_ms,
        );
        if !o.allow_ips.is_empty() {
            self.allow_ips.clone_from(&o.allow_ips);
        }
        if !o.deny_ips.is_empty() {
            self.deny_ips.clone_from(&o.deny_ips);
        }
        if o.metrics_listen.is_some() {
            self.metrics_listen.clone_from(&o.metrics_listen);
        }
        if o.admin_dashboard_dir.is_some() {
            self.admin_dashboard_dir.clone_from(&o.admin_dashboard_dir);
        }
        set(&mut self.webhook_allow_private, &o.webhook_allow_private);
        if o.webhook_secret.is_some() {
            self.webhook_secret.clone_from(&o.webhook_secret);
        }
        if o.webhook_ca_pem.is_some() {
            self.webhook_ca_pem.clone_from(&o.webhook_ca_pem);
        }
        if o.webhook_url.is_some() {
            self.webhook_url.clone_from(&o.webhook_url);
        }
        if o.storage.is_some() {
            self.storage.clone_from(&o.storage);
        }
        set(&mut self.storage_pool_size, &o.storage_pool_size);
        if o.redis.is_some() {
            self.redis.clone_from(&o.redis);
        }
        set(&mut self.redis_namespace, &o.redis_namespace);
        if o.attachments_dir.is_some() {
            self.attachments_dir.clone_from(&o.attachments_dir);
        }
        if o.ws_listen.is_some() {
            self.ws_listen.clone_from(&o.ws_listen);
        }
        set(&mut self.ws_plain, &o.ws_plain);
        set(&mut self.ws_tls_proxy, &o.ws_tls_proxy);
        set(&mut self.web_app_dir, &o.web_app_dir);
        self
    }

    /// Checks ranges that would otherwise fail later at run time.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_pem.is_some() != self.key_pem.is_some() {
            return Err(ConfigError::Invalid(
                "cert_pem and key_pem must be given together",
            ));
        }
        if argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .is_err()
        {
            return Err(ConfigError::Invalid("argon2 parameters out of range"));
        }
        if self.totp_skew_steps > 10 {
            return Err(ConfigError::Invalid("totp_skew_steps must be at most 10"));
        }
        if self.max_queue_len == 0 {
            return Err(ConfigError::Invalid("max_queue_len must be at least 1"));
        }
        if !(1..=100).contains(&self.queue_sender_share_percent) {
            return Err(ConfigError::Invalid(
                "queue_sender_share_percent must be between 1 and 100",
            ));
        }
        if self.max_groups_per_account == 0 {
            return Err(ConfigError::Invalid(
                "max_groups_per_account must be at least 1",
            ));
        }
        if self.envelope_ttl_secs == 0 || self.purge_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "envelope_ttl_secs and purge_interval_secs must be at least 1",
            ));
        }
        if self.max_frame_len < 64 * 1024 {
            return Err(ConfigError::Invalid("max_frame_len must be at least 65536"));
        }
        // An envelope must fit in one fetch response together with its metadata.
        if u64::from(self.max_envelope_len) + 1024 > u64::from(self.max_frame_len)
            || self.max_envelope_len == 0
        {
            return Err(ConfigError::Invalid(
                "max_envelope_len must be at least 1 and at most max_frame_len - 1024",
            ));
        }
        if self.max_group_members < 1 || self.max_connections < 1 || self.max_connections_per_ip < 1
        {
            return Err(ConfigError::Invalid(
                "max_group_members, max_connections and max_connections_per_ip must be at least 1",
            ));
        }
        if self.attachment_ttl_secs == 0 || self.attachment_commit_interval_bytes == 0 {
            return Err(ConfigError::Invalid(
                "attachment_ttl_secs and attachment_commit_interval_bytes must be at least 1",
            ));
        }
        if !(1..=24 * 3600).contains(&self.idle_timeout_secs) {
            return Err(ConfigError::Invalid(
                "idle_timeout_secs must be between 1 and 86400",
            ));
        }
        if !(1..=60).contains(&self.handshake_timeout_secs) {
            return Err(ConfigError::Invalid(
                "handshake_timeout_secs must be between 1 and 60",
            ));
        }
        if !(1..=604_800).contains(&self.sender_certificate_ttl_secs) {
            return Err(ConfigError::Invalid(
                "sender_certificate_ttl_secs must be between 1 and 604800",
            ));
        }
        if !(1..=3600).contains(&self.login_timeout_secs)
            || !(1..=3600).contains(&self.frame_timeout_secs)
        {
            return Err(ConfigError::Invalid(
                "login_timeout_secs and frame_timeout_secs must be between 1 and 3600",
            ));
        }
        if let Some(url) = &self.webhook_url {
            crate::webhooks::WebhookTarget::parse(url, self.webhook_allow_private)?;
        }
        self.storage_backend()?;
        let ws = self.ws_listen()?;
        if self.ws_plain && !self.ws_tls_proxy {
            let loopback = match ws {
                WsListen::Off => true,
                WsListen::SameAsQuic => self.listen.ip().is_loopback(),
                WsListen::At(addr) => addr.ip().is_loopback(),
            };
            if !loopback {
                return Err(ConfigError::Invalid(
                    "ws_plain needs a loopback ws address, or ws_tls_proxy = true",
                ));
            }
        }
        if !(1..=1000).contains(&self.storage_pool_size) {
            return Err(ConfigError::Invalid(
                "storage_pool_size must be between 1 and 1000",
            ));
        }
        if let Some(url) = &self.redis {
            match crate::bus::target::Target::parse(url.expose()) {
                Ok(_) => {}
                Err(crate::bus::target::TargetError::Scheme) => {
                    return Err(ConfigError::Invalid(
                        "redis must be a redis://, redis+unix:// or redis+cluster:// URL",
                    ));
                }
                Err(crate::bus::target::TargetError::Seeds) => {
                    return Err(ConfigError::Invalid(
                        "a redis+cluster:// URL needs host:port seed nodes separated by commas",
                    ));
                }
            }
        }
        if self.redis_namespace.is_empty()
            || !self
                .redis_namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid(
                "redis_namespace must be non-empty ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(())
    }

    /// The storage backend named by `storage`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for anything but `sqlite` or a PostgreSQL URL.
    pub fn storage_backend(&self) -> Result<StorageBackend, ConfigError> {
        match &self.storage {
            None => Ok(StorageBackend::Sqlite),
            Some(url) if url.expose() == "sqlite" => Ok(StorageBackend::Sqlite),
            Some(url)
                if url.expose().starts_with("postgres://")
                    || url.expose().starts_with("postgresql://") =>
            {
                Ok(StorageBackend::Postgres(url.clone()))
            }
            Some(_) => Err(ConfigError::Invalid(
                "storage must be \"sqlite\" or a postgres:// URL",
            )),
        }
    }

    /// Directory holding attachment files.
    pub fn attachments_dir(&self) -> PathBuf {
        self.attachments_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("attachments"))
    }

    /// Path of the SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("microbot.sqlite3")
    }

    /// Envelopes one sender account may have in one device's queue:
    /// `queue_sender_share_percent` of `max_queue_len`, at least 1.
    pub fn max_queue_per_sender(&self) -> u32 {
        let share = u64::from(self.max_queue_len)
            .saturating_mul(u64::from(self.queue_sender_share_percent.min(100)))
            / 100;
        u32::try_from(share).unwrap_or(u32::MAX).max(1)
    }
}

#[cfg(test)]
mod tests;
