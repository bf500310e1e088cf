//! Traces of every intermediate value of a ratchet step, for test vectors
//! and conformance tests only (SPEC.md §5.9).
//!
//! The session's code is generic over a [`TraceSink`]; the normal path uses
//! [`NoTrace`], whose empty methods compile away, so only the `*_traced`
//! entry points pay for copying keys out. A trace holds secrets: it is
//! zeroized on drop and its `Debug` prints none of them.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::labels::{KEY_LEN, NONCE_LEN};

use super::header::RATCHET_HEADER_LEN;
use super::keys::{ChainKey, MessageKey, MessageSecrets, RootKey};

/// One application of KDF_RK: a Diffie-Hellman between one own and one peer
/// ratchet key, fed with the previous root key into HKDF.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RootStepTrace {
    /// Our ratchet public key in this Diffie-Hellman.
    pub own_ratchet_key: [u8; KEY_LEN],
    /// The peer's ratchet public key in this Diffie-Hellman.
    pub remote_ratchet_key: [u8; KEY_LEN],
    /// The X25519 output (HKDF's ikm).
    pub dh_output: [u8; KEY_LEN],
    /// The root key before the step (HKDF's salt).
    pub previous_root_key: [u8; KEY_LEN],
    /// The root key after the step (first 32 bytes of the HKDF output).
    pub root_key: [u8; KEY_LEN],
    /// The new chain key (last 32 bytes of the HKDF output).
    pub chain_key: [u8; KEY_LEN],
}

/// Every value that produced or opened one `RatchetMessage`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MessageTrace {
    /// Root steps taken for this message, in order: none on a steady chain;
    /// on a receive that starts a new chain, the receiving step then the
    /// sending step of the DH ratchet.
    pub root_steps: Vec<RootStepTrace>,
    /// The encoded header (40 bytes).
    pub header: [u8; RATCHET_HEADER_LEN],
    /// The chain key the message key was derived from; `None` when the key
    /// came from the store of skipped keys (it was derived earlier).
    pub chain_key: Option<[u8; KEY_LEN]>,
    /// The message key MK.
    pub message_key: [u8; KEY_LEN],
    /// The ChaCha20-Poly1305 key (first 32 bytes of HKDF(MK)).
    pub aead_key: [u8; KEY_LEN],
    /// The ChaCha20-Poly1305 nonce (last 12 bytes of HKDF(MK)).
    pub nonce: [u8; NONCE_LEN],
    /// The AEAD's associated data: session AD ‖ version byte ‖ encoded header.
    pub associated_data: Vec<u8>,
    /// The AEAD output: ciphertext ‖ 16-byte tag.
    pub sealed: Vec<u8>,
}

impl Default for MessageTrace {
    fn default() -> Self {
        Self {
            root_steps: Vec::new(),
            header: [0u8; RATCHET_HEADER_LEN],
            chain_key: None,
            message_key: [0u8; KEY_LEN],
            aead_key: [0u8; KEY_LEN],
            nonce: [0u8; NONCE_LEN],
            associated_data: Vec::new(),
            sealed: Vec::new(),
        }
    }
}

impl fmt::Debug for RootStepTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootStepTrace(<secrets redacted>)")
    }
}

impl fmt::Debug for MessageTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageTrace")
            .field("root_steps", &self.root_steps.len())
            .field("sealed_len", &self.sealed.len())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// Inputs and outputs of one KDF_RK, by reference.
pub(crate) struct RootStep<'a> {
    pub(crate) own_ratchet_key: &'a [u8; KEY_LEN],
    pub(crate) remote_ratchet_key: &'a [u8; KEY_LEN],
    pub(crate) dh_output: &'a [u8; KEY_LEN],
    pub(crate) previous_root_key: &'a RootKey,
    pub(crate) root_key: &'a RootKey,
    pub(crate) chain_key: &'a ChainKey,
}

/// The values that sealed or opened one message, by reference.
pub(crate) struct MessageStep<'a> {
    pub(crate) header: &'a [u8; RATCHET_HEADER_LEN],
    pub(crate) chain_key: Option<&'a ChainKey>,
    pub(crate) message_key: &'a MessageKey,
    pub(crate) secrets: &'a MessageSecrets,
    pub(crate) associated_data: &'a [u8],
    pub(crate) sealed: &'a [u8],
}

/// Where the session reports intermediate values.
pub(crate) trait TraceSink {
    fn root_step(&mut self, step: RootStep<'_>);
    fn message(&mut self, step: MessageStep<'_>);
}

/// The sink of the normal path: records nothing.
pub(crate) struct NoTrace;

impl TraceSink for NoTrace {
    #[inline(always)]
    fn root_step(&mut self, _: RootStep<'_>) {}
    #[inline(always)]
    fn message(&mut self, _: MessageStep<'_>) {}
}

impl TraceSink for RootStepTrace {
    fn root_step(&mut self, step: RootStep<'_>) {
        *self = root_step_trace(&step);
    }
    fn message(&mut self, _: MessageStep<'_>) {}
}

impl TraceSink for MessageTrace {
    fn root_step(&mut self, step: RootStep<'_>) {
        self.root_steps.push(root_step_trace(&step));
    }

    fn message(&mut self, step: MessageStep<'_>) {
        self.header = *step.header;
        self.chain_key = step.chain_key.map(|ck| *ck.0.as_bytes());
        self.message_key = *step.message_key.0.as_bytes();
        self.aead_key = *step.secrets.aead_key;
        self.nonce = step.secrets.nonce;
        self.associated_data = step.associated_data.to_vec();
        self.sealed = step.sealed.to_vec();
    }
}

fn root_step_trace(step: &RootStep<'_>) -> RootStepTrace {
    RootStepTrace {
        own_ratchet_key: *step.own_ratchet_key,
        remote_ratchet_key: *step.remote_ratchet_key,
        dh_output: *step.dh_output,
        previous_root_key: *step.previous_root_key.0.as_bytes(),
        root_key: *step.root_key.0.as_bytes(),
        chain_key: *step.chain_key.0.as_bytes(),
    }
}
