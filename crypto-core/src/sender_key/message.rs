//! The sender-key message wire layout (SPEC.md §6.4):
//!
//! ```text
//! +---------+-------------+--------------+----------------------+-------------+
//! | version | key id      | iteration    | ciphertext ‖ tag     | signature   |
//! | 1 B     | u32 BE (4)  | u32 BE (4)   | len(plaintext) + 16  | Ed25519, 64 |
//! +---------+-------------+--------------+----------------------+-------------+
//! ```
//! The signature covers every byte before it. The AEAD associated data is
//! `len(group id) (1 B) ‖ group id ‖ version ‖ key id ‖ iteration`.

use crate::labels::{MAX_GROUP_ID_LEN, SENDER_KEY_MESSAGE_VERSION, SIGNATURE_LEN, TAG_LEN};

use super::{GroupId, SenderKeyError};

/// Bytes before the ciphertext: version, key id, iteration.
pub(super) const HEADER_LEN: usize = 1 + 4 + 4;
/// The shortest valid message: header, an empty ciphertext's tag, signature.
pub(super) const MIN_MESSAGE_LEN: usize = HEADER_LEN + TAG_LEN + SIGNATURE_LEN;

/// A structurally valid sender-key message, borrowed from its wire bytes.
/// Parsing checks the layout only; authenticity is checked by
/// [`InboundSenderKey::decrypt`](super::InboundSenderKey::decrypt).
#[derive(Debug, Clone, Copy)]
pub struct SenderKeyMessage<'a> {
    key_id: u32,
    iteration: u32,
    header: [u8; HEADER_LEN],
    signed: &'a [u8],
    sealed: &'a [u8],
    signature: &'a [u8],
}

impl<'a> SenderKeyMessage<'a> {
    /// Parses the fixed layout. Refuses short input, unknown versions and the
    /// reserved iteration 0xFFFFFFFF.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SenderKeyError> {
        if bytes.len() < MIN_MESSAGE_LEN {
            return Err(SenderKeyError::TooShort {
                len: bytes.len(),
                min: MIN_MESSAGE_LEN,
            });
        }
        let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let (header_bytes, sealed) = signed.split_at(HEADER_LEN);
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(header_bytes);
        let [version, k0, k1, k2, k3, i0, i1, i2, i3] = header;
        if version != SENDER_KEY_MESSAGE_VERSION {
            return Err(SenderKeyError::UnsupportedVersion(version));
        }
        let iteration = u32::from_be_bytes([i0, i1, i2, i3]);
        if iteration == u32::MAX {
            return Err(SenderKeyError::ReservedIteration);
        }
        Ok(Self {
            key_id: u32::from_be_bytes([k0, k1, k2, k3]),
            iteration,
            header,
            signed,
            sealed,
            signature,
        })
    }

    /// The generation (key id) the message was sent under.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The message's position in the sender's chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    pub(super) fn signed_part(&self) -> &'a [u8] {
        self.signed
    }

    pub(super) fn signature(&self) -> &'a [u8] {
        self.signature
    }

    pub(super) fn sealed(&self) -> &'a [u8] {
        self.sealed
    }

    pub(super) fn associated_data(&self, group_id: &GroupId) -> AssociatedData {
        AssociatedData::new(group_id, &self.header)
    }
}

/// `version ‖ key id ‖ iteration` as they open the message.
pub(super) fn header(key_id: u32, iteration: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    let (version, rest) = header.split_at_mut(1);
    let (key, iter) = rest.split_at_mut(4);
    version.copy_from_slice(&[SENDER_KEY_MESSAGE_VERSION]);
    key.copy_from_slice(&key_id.to_be_bytes());
    iter.copy_from_slice(&iteration.to_be_bytes());
    header
}

/// `len(group id) as u8 ‖ group id ‖ header`: binds the group, generation and
/// position into the AEAD. Built on the stack: at most 1 + 255 + 9 bytes.
pub(super) struct AssociatedData {
    bytes: [u8; MAX_AD_LEN],
    len: usize,
}

/// The longest associated data: the longest group id.
const MAX_AD_LEN: usize = 1 + MAX_GROUP_ID_LEN + HEADER_LEN;

impl AssociatedData {
    pub(super) fn new(group_id: &GroupId, header: &[u8; HEADER_LEN]) -> Self {
        let id = group_id.as_bytes();
        let mut ad = Self {
            bytes: [0; MAX_AD_LEN],
            len: 1 + id.len() + HEADER_LEN,
        };
        // GroupId guarantees 1..=255 bytes, so the length fits one byte and
        // everything fits MAX_AD_LEN.
        let (length, rest) = ad.bytes.split_at_mut(1);
        length.copy_from_slice(&[u8::try_from(id.len()).unwrap_or(u8::MAX)]);
        let (id_part, rest) = rest.split_at_mut(id.len());
        id_part.copy_from_slice(id);
        let (header_part, _) = rest.split_at_mut(HEADER_LEN);
        header_part.copy_from_slice(header);
        ad
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        let (ad, _) = self.bytes.split_at(self.len);
        ad
    }
}
