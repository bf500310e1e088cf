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
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod attachment_http;
pub mod attachments;
pub mod auth;
pub mod backup;
pub mod bus;
pub mod clock;
pub mod config;
pub mod connection;
pub mod device_lists;
pub mod dispatch;
pub mod endpoint;
pub mod error;
pub mod groups;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod provisioning;
pub mod queue_caps;
pub mod queues;
pub mod sealed;
pub mod server;
pub mod state;
pub mod storage;
pub mod web_app;
pub mod webhooks;
pub mod websocket;
pub mod websocket_attach;

pub use config::{Config, Overrides};
pub use server::{Server, ShutdownHandle, StartError};
