//! Sender Keys for group messages (SPEC.md §6), in the style of Signal's
//! Sender Keys.
//!
//! Per (group, sender device) the sender owns an [`OutboundSenderKey`]: a key
//! id naming the generation, a chain key, an iteration counter and an Ed25519
//! signing key. It hands every member a [`SenderKeyDistribution`] (inside the
//! pairwise sessions); each member builds an [`InboundSenderKey`] from it.
//! Every [`SenderKeyMessage`] is encrypted under the chain's next message key
//! and signed; receivers verify the signature before they touch the chain.
//! Rotation ([`OutboundSenderKey::rotate`]) starts a new generation, so a
//! member removed from the group cannot read what follows.
//!
//! Invariants:
//! - A failed decrypt leaves the receiver's state exactly as it was.
//! - Message keys of skipped iterations are kept, at most
//!   [`MAX_SENDER_KEY_SKIPPED`](crate::labels::MAX_SENDER_KEY_SKIPPED), each usable once.
//! - Secrets are zeroized on drop and never printed by `Debug`.
//!
//! This module does not own the transport of distributions (the pairwise
//! ratchet carries them), group membership (the server and client own that),
//! or the decision of when to rotate (the client rotates when membership shrinks).

mod chain;
mod distribution;
mod inbound;
mod message;
mod outbound;
mod record;
mod state;

use std::fmt;

pub use distribution::{DistributionError, SenderKeyDistribution};
pub use inbound::InboundSenderKey;
pub use message::SenderKeyMessage;
pub use outbound::{OutboundSenderKey, SenderKeyMessageTrace};
pub use record::SenderKeyRecord;

use crate::labels::MAX_GROUP_ID_LEN;

/// The group a sender key belongs to: 1 to
/// [`MAX_GROUP_ID_LEN`](crate::labels::MAX_GROUP_ID_LEN) opaque bytes, bound
/// into every message's associated data.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GroupId(Vec<u8>);

impl GroupId {
    /// Wraps the group's id bytes; refuses empty ids and ids over
    /// [`MAX_GROUP_ID_LEN`](crate::labels::MAX_GROUP_ID_LEN) bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, InvalidGroupId> {
        if bytes.is_empty() || bytes.len() > MAX_GROUP_ID_LEN {
            return Err(InvalidGroupId { len: bytes.len() });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", crate::identity::hex_prefix(&self.0))
    }
}

/// A group id was empty or longer than
/// [`MAX_GROUP_ID_LEN`](crate::labels::MAX_GROUP_ID_LEN) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("group id must be 1 to {max} bytes, got {len}", max = MAX_GROUP_ID_LEN)]
pub struct InvalidGroupId {
    /// Length that was given.
    pub len: usize,
}

/// Why a sender-key message could not be decrypted. The receiver's state is
/// unchanged whenever one of these is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SenderKeyError {
    /// The message is shorter than the smallest possible sender-key message.
    #[error("sender-key message too short: {len} bytes, at least {min} needed")]
    TooShort {
        /// Length that was given.
        len: usize,
        /// Smallest valid length.
        min: usize,
    },
    /// The version byte is not one this implementation speaks.
    #[error("unsupported sender-key message version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The iteration field is 0xFFFFFFFF, which no sender ever uses.
    #[error("sender-key message iteration 0xFFFFFFFF is reserved")]
    ReservedIteration,
    /// No known generation of this sender's key has this key id.
    #[error("no sender key with key id {key_id:#010x}")]
    UnknownKeyId {
        /// The key id the message names.
        key_id: u32,
    },
    /// The Ed25519 signature does not verify under the sender's signing key.
    #[error("sender-key message signature does not verify")]
    BadSignature,
    /// The iteration is behind the chain and its key is not stored: a
    /// duplicate, or a message older than the distribution or the skipped-key window.
    #[error("sender-key message {iteration} was already received or its key has expired")]
    DuplicateOrExpired {
        /// The message's iteration.
        iteration: u32,
    },
    /// The iteration is further ahead than
    /// [`MAX_SENDER_KEY_SKIP`](crate::labels::MAX_SENDER_KEY_SKIP) messages.
    #[error("sender-key message {iteration} is too far ahead of the chain (at {current})")]
    TooFarAhead {
        /// The message's iteration.
        iteration: u32,
        /// The next iteration the receiver expects.
        current: u32,
    },
    /// The signature verified but the AEAD refused the ciphertext (wrong
    /// group id, or a sender that encrypted under a key it did not distribute).
    #[error("sender-key message failed to decrypt")]
    DecryptionFailed,
}

/// The sender's chain has reached iteration 0xFFFFFFFF: rotate to a new generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sender-key chain exhausted: rotate the sender key")]
pub struct ChainExhausted;

/// Why persisted sender-key state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The bytes are not a valid protobuf encoding of the expected message.
    #[error("sender-key state is not valid protobuf: {0}")]
    Decode(String),
    /// The state was written by an unknown format version.
    #[error("unsupported sender-key state version {found} (expected {expected})")]
    UnsupportedVersion {
        /// Version found in the bytes.
        found: u32,
        /// Version this implementation writes.
        expected: u32,
    },
    /// A field has the wrong length or an impossible value.
    #[error("sender-key state field `{0}` is invalid")]
    InvalidField(&'static str),
}

impl From<prost::DecodeError> for StateError {
    fn from(error: prost::DecodeError) -> Self {
        Self::Decode(error.to_string())
    }
}
