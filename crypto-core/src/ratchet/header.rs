//! The ratchet header and the `RatchetMessage` wire layout (SPEC.md §5.4).
//!
//! ```text
//! RatchetMessage
//! +---------+------------------------------------------------+-----------------+-----------+
//! | version |                 RatchetHeader (40)              |   ciphertext    |  tag (16) |
//! |  0x01   | ratchet_key (32) | PN (u32 BE) | N (u32 BE)     | (plaintext len) |           |
//! +---------+------------------------------------------------+-----------------+-----------+
//!   1 byte    bytes 1..33        33..37        37..41          41..len-16        last 16
//! ```
//!
//! The header is fixed-width bytes, not protobuf, so the bytes bound by the
//! AEAD are canonical. The AEAD's associated data is the session's AD
//! followed by the first 41 bytes of the message, version byte included
//! (`AD ‖ version ‖ header`), so the version is authenticated like the header. Every 40-byte string is a well-formed header; whether
//! its ratchet key is usable is decided by the Diffie-Hellman step.
//! This module does not own keys or session state.

use std::fmt;

use crate::identity::hex_prefix;
use crate::labels::{KEY_LEN, TAG_LEN};

use super::DecryptError;

/// The version byte that opens every `RatchetMessage`.
pub const RATCHET_MESSAGE_VERSION: u8 = 0x01;
/// Length of an encoded [`RatchetHeader`]: 32 + 4 + 4 bytes.
pub const RATCHET_HEADER_LEN: usize = KEY_LEN + 4 + 4;
/// Shortest valid `RatchetMessage` (an empty plaintext): version, header, tag.
pub const RATCHET_MESSAGE_MIN_LEN: usize = 1 + RATCHET_HEADER_LEN + TAG_LEN;

/// The Double Ratchet header sent in the clear with every message.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RatchetHeader {
    /// The sender's current ratchet public key (X25519), DHs in Signal's spec.
    pub ratchet_key: [u8; KEY_LEN],
    /// PN: how many messages the sender sent on its previous sending chain.
    pub previous_chain_length: u32,
    /// N: this message's number on the current sending chain, from 0.
    pub message_number: u32,
}

impl RatchetHeader {
    /// The 40-byte encoding: `ratchet_key ‖ PN (u32 BE) ‖ N (u32 BE)`.
    pub fn encode(&self) -> [u8; RATCHET_HEADER_LEN] {
        let mut out = [0u8; RATCHET_HEADER_LEN];
        let (key, counters) = out.split_at_mut(KEY_LEN);
        key.copy_from_slice(&self.ratchet_key);
        let (pn, n) = counters.split_at_mut(4);
        pn.copy_from_slice(&self.previous_chain_length.to_be_bytes());
        n.copy_from_slice(&self.message_number.to_be_bytes());
        out
    }

    /// Decodes the 40-byte encoding. Every 40-byte string is a header.
    pub fn decode(bytes: &[u8; RATCHET_HEADER_LEN]) -> Self {
        let (key, counters) = bytes.split_at(KEY_LEN);
        let (pn, n) = counters.split_at(4);
        let mut ratchet_key = [0u8; KEY_LEN];
        ratchet_key.copy_from_slice(key);
        let mut pn_bytes = [0u8; 4];
        pn_bytes.copy_from_slice(pn);
        let mut n_bytes = [0u8; 4];
        n_bytes.copy_from_slice(n);
        Self {
            ratchet_key,
            previous_chain_length: u32::from_be_bytes(pn_bytes),
            message_number: u32::from_be_bytes(n_bytes),
        }
    }
}

impl fmt::Debug for RatchetHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetHeader")
            .field("ratchet_key", &hex_prefix(&self.ratchet_key))
            .field("previous_chain_length", &self.previous_chain_length)
            .field("message_number", &self.message_number)
            .finish()
    }
}

/// A parsed `RatchetMessage`, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RatchetMessage<'a> {
    /// The version byte (authenticated: it is part of the AEAD's associated data).
    pub version: u8,
    /// The decoded header.
    pub header: RatchetHeader,
    /// The header exactly as it appeared on the wire (part of the AEAD's AD).
    pub header_bytes: &'a [u8; RATCHET_HEADER_LEN],
    /// ChaCha20-Poly1305 ciphertext followed by its 16-byte tag.
    pub sealed: &'a [u8],
}

impl<'a> RatchetMessage<'a> {
    /// Splits `bytes` into version, header and sealed payload. Checks the
    /// version byte first, then the length; authenticates nothing.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecryptError> {
        Self::parse_accepting(bytes, &[RATCHET_MESSAGE_VERSION])
    }

    /// [`Self::parse`] with the set of version bytes that are accepted.
    pub(crate) fn parse_accepting(bytes: &'a [u8], accepted: &[u8]) -> Result<Self, DecryptError> {
        let truncated = DecryptError::Truncated {
            len: bytes.len(),
            min: RATCHET_MESSAGE_MIN_LEN,
        };
        let (&version, rest) = bytes.split_first().ok_or(truncated)?;
        if !accepted.contains(&version) {
            return Err(DecryptError::UnsupportedVersion { version });
        }
        if bytes.len() < RATCHET_MESSAGE_MIN_LEN {
            return Err(truncated);
        }
        let (header_bytes, sealed) = rest
            .split_first_chunk::<RATCHET_HEADER_LEN>()
            .ok_or(truncated)?;
        Ok(Self {
            version,
            header: RatchetHeader::decode(header_bytes),
            header_bytes,
            sealed,
        })
    }
}

impl fmt::Debug for RatchetMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetMessage")
            .field("version", &self.version)
            .field("header", &self.header)
            .field("sealed_len", &self.sealed.len())
            .finish()
    }
}

/// The AEAD's associated data of a message: `session AD ‖ version ‖ header`
/// (SPEC.md §5.4).
pub(crate) fn message_associated_data(
    session_ad: &[u8],
    version: u8,
    header: &[u8; RATCHET_HEADER_LEN],
) -> Vec<u8> {
    let mut ad = Vec::with_capacity(session_ad.len() + 1 + RATCHET_HEADER_LEN);
    ad.extend_from_slice(session_ad);
    ad.push(version);
    ad.extend_from_slice(header);
    ad
}

/// Assembles `version ‖ header ‖ sealed`.
pub(crate) fn encode_message(header: &[u8; RATCHET_HEADER_LEN], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + RATCHET_HEADER_LEN + sealed.len());
    out.push(RATCHET_MESSAGE_VERSION);
    out.extend_from_slice(header);
    out.extend_from_slice(sealed);
    out
}
