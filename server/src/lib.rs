//! # microbot-server
//!
//! The Microbot reference server (SPEC.md §12–§14): a QUIC endpoint speaking
//! `proto/transport.proto`, accounts with enforced TOTP, device login by
//! challenge signature, prekey distribution and durable queues of opaque
//! ciphertext. It never holds a key that decrypts user content and does not
//! link `microbot-crypto`.
//!
//! Part 1 of the server; groups, attachments, rate limits, metrics, backup
//! and webhooks are answered with `ERROR_CODE_UNSUPPORTED_REQUEST` for now.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod bus;
pub mod config;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod keys;
pub mod queues;
pub mod server;
pub mod state;
pub mod storage;

pub use config::{Config, Overrides};
pub use server::{Server, ShutdownHandle, StartError};
