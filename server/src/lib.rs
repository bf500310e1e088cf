//! # microbot-server
//!
//! The Microbot reference server (SPEC.md §12–§14): a QUIC endpoint speaking
//! `proto/transport.proto`, accounts with enforced TOTP, device login by
//! challenge signature, prekey distribution and durable queues of opaque
//! ciphertext. It never holds a key that decrypts user content and does not
//! link `microbot-crypto`.
//!
//! Part 2 adds groups (§12.10), attachments (§12.11), limits (§12.12),
//! metrics, online backup and webhooks (§18).
//!
//! ## Public surface
//! What an embedder or operator needs, and nothing else:
//! - [`Server`], [`ShutdownHandle`], [`StartError`]: bind a server from a
//!   [`Config`], run it, stop it (draining).
//! - [`config`]: [`Config`] and the types of its fields, [`Overrides`]
//!   (the command line and environment), the validation errors.
//! - [`backup`]: online backup and restore of the embedded store.
//! - [`admin::cli`] and [`admin::report`]: the operator's `admin` and
//!   `report` commands.
//! - [`WebhookTarget`]: the check a `webhook_url` passes.
//!
//! Storage and bus backends are chosen by the configuration
//! (`storage`, `redis`), not plugged in by the embedder, so their traits
//! are crate-private like every other module. The crate's own harnesses
//! (integration tests, fuzz targets) reach the internals through
//! `testing`, behind the cargo feature of the same name.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub(crate) mod attachment_http;
pub(crate) mod attachments;
pub(crate) mod auth;
pub mod backup;
pub(crate) mod bus;
pub(crate) mod clock;
pub mod config;
pub(crate) mod connection;
pub(crate) mod device_lists;
pub(crate) mod dispatch;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod groups;
pub(crate) mod keys;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod provisioning;
pub(crate) mod queue_caps;
pub(crate) mod queues;
pub(crate) mod sealed;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod storage;
#[cfg(feature = "testing")]
pub mod testing;
pub(crate) mod web_app;
pub(crate) mod webhooks;
pub(crate) mod websocket;
pub(crate) mod websocket_attach;

pub use config::{Config, Overrides};
pub use server::{ComponentError, Server, ShutdownHandle, StartError};
pub use webhooks::{BadWebhookUrl, WebhookTarget};
