//! One error enum per ratchet operation (SPEC.md §5.8): encrypting, decrypting,
//! and decoding persisted state. Every failure leaves the session unchanged.

use crate::identity::KeyError;

/// Why a session could not encrypt. The session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    /// The responder has not yet received a message, so it has no sending
    /// chain (the Double Ratchet's initiator always speaks first).
    #[error("no sending chain yet: the responder must receive a message before it can send")]
    NoSendingChain,
    /// The sending chain has used every message number a header can carry;
    /// the session needs a message from the peer (a DH ratchet step) first.
    #[error("sending chain exhausted: message number {max} reached", max = u32::MAX)]
    ChainExhausted,
}

/// Why a message did not decrypt. The session is left byte-for-byte unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The message is shorter than a version byte, a header and a tag.
    #[error("ratchet message is {len} bytes; the shortest valid one is {min}")]
    Truncated {
        /// Length received.
        len: usize,
        /// Shortest valid length.
        min: usize,
    },
    /// The version byte is not one this implementation speaks.
    #[error("unsupported ratchet message version {version:#04x}")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// Decrypting would skip more message keys in one chain than allowed;
    /// no key was derived.
    #[error("message would skip {skip} message keys in one chain; at most {max} are allowed")]
    TooFarAhead {
        /// How many keys one chain would have to skip.
        skip: u64,
        /// `labels::MAX_SKIP_PER_CHAIN`.
        max: u32,
    },
    /// The message number was already used on its chain: a replay, or a
    /// skipped key that was consumed or evicted.
    #[error("message {message_number} of this chain was already decrypted or its key was evicted")]
    Duplicate {
        /// The message number in the header.
        message_number: u32,
    },
    /// Message number 0xFFFFFFFF is never sent (SPEC.md §5.4).
    #[error("message number {n:#010x} is out of range", n = u32::MAX)]
    MessageNumberOutOfRange,
    /// The header names the peer's current ratchet key, but no receiving
    /// chain exists for it (an honest peer never sends under the key the
    /// initiator started from).
    #[error("no receiving chain exists for the peer's current ratchet key")]
    NoReceivingChain,
    /// The peer's ratchet key makes the Diffie-Hellman output non-contributory
    /// (a low-order point).
    #[error("invalid peer ratchet key: {0}")]
    InvalidRatchetKey(#[from] KeyError),
    /// ChaCha20-Poly1305 refused the message: tampered bytes, a different
    /// session, or a forged header.
    #[error("authentication failed: the message was altered or is not for this session")]
    AuthenticationFailed,
}

/// Why persisted session bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The bytes are not a protobuf `RatchetState`.
    #[error("session state is not valid protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The `version` field is not `labels::STATE_VERSION`.
    #[error("unsupported session state version {version} (expected {expected})")]
    UnsupportedVersion {
        /// Version found.
        version: u32,
        /// Version this implementation writes and reads.
        expected: u32,
    },
    /// A key field has the wrong length.
    #[error("field `{field}` is {actual} bytes, expected {expected}")]
    InvalidLength {
        /// Name of the field in the .proto schema.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// A required field is absent.
    #[error("required field `{field}` is missing")]
    MissingField {
        /// Name of the field in the .proto schema.
        field: &'static str,
    },
    /// The fields contradict each other or break a rule of SPEC.md §5.7.
    #[error("inconsistent session state: {reason}")]
    Inconsistent {
        /// Which rule is broken.
        reason: &'static str,
    },
    /// More skipped message keys than `labels::MAX_SKIPPED_KEYS_TOTAL`.
    #[error("{count} skipped message keys stored; at most {max} are allowed")]
    TooManySkippedKeys {
        /// Keys found.
        count: usize,
        /// `labels::MAX_SKIPPED_KEYS_TOTAL`.
        max: usize,
    },
}
