//! # microbot-client
//!
//! The Microbot embedding SDK: what an app, a bot or the `microbot` CLI
//! links to talk end-to-end encrypted through a Microbot server.
//!
//! ```text
//! register()/confirm_registration()      create and activate the account (TOTP)
//! Account::enrol(store, server, …)       enrol this device, create its local store
//! Account::open(store, config)           reopen it (passphrase if encrypted)
//! account.connect()                      background: login, prekeys, sync, outbox, reconnect
//! account.send_text(&conversation, "…")  queued in the outbox, sent to every device
//! events.next().await                    Message, Edited, Receipt, SafetyNumberChanged, …
//! ```
//!
//! Modules, one concept each:
//! - [`config`]: server address and certificate pin, store path and passphrase, tunables.
//! - `store`: the local SQLite store, optionally encrypted at rest.
//! - `transport`: the QUIC connection and request/response matching (SPEC.md §12).
//! - [`auth`]: registration, TOTP confirmation, enrolment, device login (SPEC.md §13).
//! - `prekeys`: publishing and refilling this device's prekeys.
//! - `sessions`: pairwise sessions with every device of a conversation.
//! - `messages`: plaintext framing and the converged view of messages (§11.4).
//! - `sync`: the background connection: fetch → decrypt → store → ack, outbox, backoff.
//! - [`events`]: what the application is told.
//! - [`error`]: typed errors per operation.
//!
//! Groups (Sender Keys) and attachments are not offered yet: the server
//! does not serve their requests, and this build refuses group
//! conversations with a typed error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod account;
pub mod auth;
pub mod config;
pub mod error;
pub mod events;
mod messages;
mod prekeys;
mod sessions;
mod store;
mod sync;
mod transport;

pub use account::{Account, Enrolment, IdentitySource, LinkedIdentity};
pub use auth::{Registration, SecondFactor, confirm_registration, register};
pub use config::{AccountConfig, KdfParams, ServerConfig, StoreConfig};
pub use error::{
    AcknowledgeError, AuthError, OnlineError, OpenError, SendError, ServerError, StoreError,
    TransportError,
};
pub use events::{ConnectionState, Conversation, Event, Events, IncomingMessage, ReceiptKind};
pub use messages::{MessageSnapshot, MessageStatus, SYNC_DESTINATION_FIELD};
pub use microbot_crypto::fingerprint::SafetyNumber;
pub use microbot_protocol::MessageId;
pub use microbot_protocol::transport::ErrorCode;
pub use transport::{ALPN, quic_client_config};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
