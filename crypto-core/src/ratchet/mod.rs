//! The Double Ratchet (SPEC.md §5): Signal's algorithm with the recommended
//! cryptographic functions of its section 5.2, ChaCha20-Poly1305 as ENCRYPT,
//! and a fixed-width header.
//!
//! - `keys`: KDF_RK, KDF_CK, message-key expansion (§5.3).
//! - `header`: [`RatchetHeader`] and the `RatchetMessage` wire layout (§5.4).
//! - `session`: [`RatchetSession`], the state machine (§5.2, §5.5, §5.6, §5.8).
//! - `skipped`: the bounded store of skipped message keys (§5.6).
//! - `state`: persistence as a versioned protobuf message (§5.7).
//! - `trace`: [`MessageTrace`], intermediate values for test vectors (§5.9).
//!
//! This module does not own the handshake that produces the shared secret,
//! the associated data and the first ratchet keys (see `handshake`), nor what
//! the plaintext means (see the protocol crate's content messages).

mod error;
mod header;
mod keys;
mod session;
mod skipped;
mod state;
mod trace;

pub use error::{DecryptError, EncryptError, StateError};
pub use header::{
    RATCHET_HEADER_LEN, RATCHET_MESSAGE_MIN_LEN, RATCHET_MESSAGE_VERSION, RatchetHeader,
    RatchetMessage,
};
pub use session::RatchetSession;
pub use trace::{MessageTrace, RootStepTrace};
