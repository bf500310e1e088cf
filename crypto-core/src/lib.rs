//! # microbot-crypto
//!
//! The end-to-end encryption core of Microbot: pure, synchronous, no I/O, no
//! clock. Randomness is always injected (`&mut impl CryptoRng`) so tests and
//! test vectors are deterministic.
//!
//! One cryptographic concept per module:
//! - [`identity`]: the account identity (Ed25519, used as X25519 in the handshake).
//! - [`prekeys`]: signed prekeys, one-time prekeys, signed ML-KEM-768 prekeys.
//! - [`handshake`]: X3DH, hybrid with ML-KEM-768 as in PQXDH.
//! - [`ratchet`]: the Double Ratchet (SPEC.md §5).
//! - [`session`]: a 1:1 session: handshake + ratchet + the initial (prekey) message.
//! - [`sender_key`]: Sender Keys for groups (SPEC.md §6).
//! - [`attachment`]: segmented STREAM encryption of files (SPEC.md §7).
//! - [`fingerprint`]: safety numbers (SPEC.md §8).
//! - [`provisioning`]: sealing the identity to a new device when linking (SPEC.md §12.14).
//! - [`sealed_sender`]: envelopes whose sender only the recipient learns, with server-signed sender certificates (SPEC.md §19).
//! - [`device_list`]: the account's device list signed by its identity (SPEC.md §20).
//! - [`labels`]: every label, length and limit, as written in SPEC.md.
//!
//! Secrets are zeroized on drop and never appear in `Debug` output. Every
//! persisted type serialises to a versioned protobuf message (SPEC.md §9).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod attachment;
pub mod device_list;
mod dh;
pub mod fingerprint;
pub mod handshake;
pub mod identity;
pub mod kdf;
pub mod labels;
pub mod prekeys;
pub mod provisioning;
pub mod ratchet;
pub mod sealed_sender;
pub mod sender_key;
pub mod session;

pub use identity::{IdentityKey, IdentityKeyPair, IdentityStateError, KeyError};
pub use session::{Session, SessionError};

/// Re-exported so callers can name the RNG bound without depending on rand_core.
pub use rand_core::CryptoRng;
