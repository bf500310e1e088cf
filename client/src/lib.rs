#![doc = include_str!("../README.md")]
//!
//! ## How the crate is organised
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
//! Modules, one concept each. The dependencies between these files form
//! no circle (tests/module_graph.rs checks it): the pure core (`outbox`'s
//! plan, `receive`, `groups::state`, `sessions`' decrypt) decides over a
//! store transaction and returns what to do; the shell (`account`, `sync`,
//! `outbox`'s drain) is what awaits the connection.
//! - `account`: the public [`Account`] API, every method of it (account/).
//! - `account_state`: what the account handle shares with its background task.
//! - `this_device`: who we are (identity, username, device id) and safety numbers.
//! - [`config`]: server addresses and certificate pin, store path and passphrase, tunables.
//! - [`store`]: the local store over a storage backend (SQLite by default, memory,
//!   or the application's own), optionally encrypted at rest.
//! - `transport`: the connection (QUIC, or the WebSocket binding with automatic
//!   fallback, `websocket`) and request/response matching (SPEC.md §12, §12.13).
//! - `tls`: TLS 1.3 with the server's certificate pinned, for both transports.
//! - `device_login`: the device-login signature (§12.5).
//! - [`auth`]: registration (also of bot accounts), TOTP confirmation, enrolment, device login (SPEC.md §13).
//! - `bots`: which contacts are bot accounts (§12.3).
//! - `prekeys`: publishing and refilling this device's prekeys.
//! - `sessions`: pairwise sessions with every device of a conversation.
//! - `device_sessions`: which devices of a contact, and of our own account, we hold
//!   sessions with, from the bundles and lists served (no I/O).
//! - `messages`: plaintext framing and the converged view of messages (§11.4).
//! - `delivery`: how far our own messages got (queued, sent, delivered, read).
//! - `history`: history in pages and the cursor of the next older page.
//! - `sync`: the background connection: login, fetch → ack, pushes, backoff.
//! - `outbox`: sends queued in order (mod.rs), what to send next and what each
//!   answer means (plan.rs, no I/O), sending them (drain.rs).
//! - `rotation`: which of the server's addresses to try next, and when (§12.1).
//! - `receive`: one envelope: decrypt → check → store → event.
//! - `shown`: which received messages the application has shown (`recv`).
//! - `groups`: group membership, names, sender keys (§6, §11.5, §12.10).
//! - `attachments`: streaming encrypted file upload and download (§7, §12.11).
//! - `linking`: a new device receives the account through a provisioning slot (§12.14).
//! - [`events`]: what the application is told.
//! - `send_failure`: why a send was dropped ([`SendFailureReason`]), typed end to end.
//! - [`error`]: typed errors per operation.
//!
//! Groups: [`Account::create_group`] and the other group operations need
//! the connection; messages to [`Conversation::Group`] go through the
//! outbox like 1:1 messages, sealed once with this device's sender key.
//! Files: [`Account::send_file`] encrypts the file while reading it
//! (constant memory) into a staging copy and queues the file message like
//! a text, online or offline; the outbox uploads the copy and sends the
//! message when connected (resuming an interrupted upload, also after a
//! restart);
//! [`Account::download_attachment`] downloads, verifies and decrypts to a
//! file, also streaming.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod account;
mod account_state;
mod attachments;
pub mod auth;
mod bots;
pub mod config;
mod delivery;
mod device_lists;
mod device_login;
mod device_sessions;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fault_injection;
mod groups;
mod history;
mod link_history;
mod linking;
mod messages;
mod outbox;
mod prekey_upload;
mod prekeys;
mod receive;
mod rotation;
mod sealed;
mod send_attempts;
mod send_failure;
mod send_plan;
mod sessions;
mod shown;
pub mod store;
mod sync;
#[cfg(test)]
mod test_fixtures;
mod this_device;
mod tls;
pub mod totp;
mod transport;
mod websocket;

pub use account::{Account, Enrolment, IdentitySource, LinkedIdentity};
pub use attachments::{FileOptions, Progress};
pub use auth::{Registration, SecondFactor, confirm_registration, register, register_bot};
pub use config::{AccountConfig, KdfParams, ServerConfig, StoreConfig, Transport};
pub use delivery::{DeliveryStage, DeliveryState, SendFailureNote};
pub use error::{
    AcknowledgeError, AttachmentError, AuthError, DatabaseError, GroupError, HistoryError,
    InvalidHistoryCursor, OnlineError, OpenError, SendError, ServerError, StoreError,
    TransportError,
};
pub use events::{
    ConnectionState, Conversation, Event, Events, IncomingMessage, ReceiptKind, UNLISTED_DEVICE,
};
pub use groups::admin::MAX_CHANGE_ATTEMPTS;
pub use groups::{
    GroupId, GroupInfo, GroupMember, GroupRole, GroupUpdate, InvalidGroupId, MAX_GROUP_NAME_LEN,
};
pub use history::{HistoryCursor, HistoryPage};
pub use link_history::{HISTORY_BUDGET, MAX_PROVISIONED_HISTORY};
pub use linking::{
    LinkError, LinkRequest, MAX_PROVISIONED_CONTACTS, MAX_PROVISIONED_GROUPS, Provisioned,
    ProvisioningCode,
};
pub use messages::{MessageSnapshot, MessageStatus, SYNC_DESTINATION_FIELD};
pub use microbot_crypto::attachment::AttachmentDecryptError;
pub use microbot_crypto::fingerprint::SafetyNumber;
pub use microbot_protocol::MessageId;
pub use microbot_protocol::content::AttachmentPointer;
/// The most bytes of text one message holds (SPEC.md §11.2): the one limit
/// [`SendError::TextTooLong`] quotes; longer text goes as a file.
pub use microbot_protocol::content_rules::MAX_TEXT_LEN;
/// What [`Account::list_devices`] returns: one device of this account.
pub use microbot_protocol::transport::DeviceInfo;
pub use microbot_protocol::transport::ErrorCode;
/// What [`Account::prekey_status`] returns: this device's prekey stock.
pub use microbot_protocol::transport::PrekeyStatus;
/// The text form of a [`MessageId`] (`id.to_text()`, `MessageId::from_text`).
pub use microbot_protocol::{InvalidMessageId, MessageIdText};
pub use send_failure::{KeyRefusal, SendFailureReason};
pub use shown::Unshown;
pub use tls::{ALPN, quic_client_config, websocket_tls_config};
pub use totp::{TotpError, TotpGenerator};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
