//! # microbot-protocol
//!
//! The wire format shared by Microbot clients and servers, sans-I/O:
//! protobuf messages generated from `proto/` and the frame codec.
//!
//! - [`codec`]: length-prefixed frames (SPEC.md §10).
//! - [`conn`]: the client–server conversation as a sans-I/O state machine
//!   (Hello, request ids, answers, pushes, errors; SPEC.md §12), with the
//!   ALPN id [`conn::ALPN`].
//! - [`content`]: what travels inside the end-to-end ciphertext (SPEC.md §11),
//!   with constructors such as [`content::Content::text`];
//!   [`content_rules`] (limits, [`decode_content`]), [`padding`] (§11.3) and
//!   [`convergence`] (edits and deletes, §11.4).
//! - [`transport`]: client ↔ server messages (SPEC.md §12).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codec;
pub mod conn;
pub mod content_rules;
pub mod convergence;
pub mod message_id;
pub mod padding;

mod content_ext;

pub use content_rules::{ContentError, MessageId, decode_content};
pub use message_id::{InvalidMessageId, MessageIdText};

/// Messages carried inside the end-to-end ciphertext (`proto/content.proto`).
#[allow(missing_docs, clippy::all)]
pub mod content {
    include!(concat!(env!("OUT_DIR"), "/microbot.content.v1.rs"));
}

/// Client ↔ server RPC messages (`proto/transport.proto`).
#[allow(missing_docs, clippy::all)]
pub mod transport {
    include!(concat!(env!("OUT_DIR"), "/microbot.transport.v1.rs"));
}
