//! The sender-key distribution (SPEC.md §6.3): what a sender hands each
//! member, inside a pairwise session, so the member can read its group messages.
//!
//! Fixed layout, 73 bytes:
//! ```text
//! version (1) = 0x01 ‖ key id (u32 BE) ‖ iteration (u32 BE) ‖ chain key (32) ‖ signing public key (32)
//! ```

use std::fmt;

use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use crate::identity::hex_prefix;
use crate::labels::{KEY_LEN, SENDER_KEY_DISTRIBUTION_VERSION};

use super::chain::SecretKey;

/// Length of an encoded distribution.
const DISTRIBUTION_LEN: usize = 1 + 4 + 4 + KEY_LEN + KEY_LEN;

/// Why distribution bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DistributionError {
    /// The encoding is not exactly 73 bytes.
    #[error("sender-key distribution must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// The only valid length.
        expected: usize,
        /// Length that was given.
        actual: usize,
    },
    /// The version byte is not one this implementation speaks.
    #[error("unsupported sender-key distribution version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The iteration is the reserved value 0xFFFFFFFF.
    #[error("sender-key distribution iteration 0xFFFFFFFF is reserved")]
    ReservedIteration,
    /// The signing key is not a valid Ed25519 point, or has small order.
    #[error("sender-key distribution carries an invalid signing key")]
    InvalidSigningKey,
}

/// One generation of a sender's key as of some iteration: enough to decrypt
/// that sender's messages from that iteration on. Holds a secret chain key:
/// zeroized on drop, never printed.
#[derive(Clone)]
pub struct SenderKeyDistribution {
    pub(super) key_id: u32,
    pub(super) iteration: u32,
    pub(super) chain_key: SecretKey,
    pub(super) signing_key: VerifyingKey,
}

impl SenderKeyDistribution {
    /// The generation this distribution belongs to.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The first iteration a receiver of this distribution can decrypt.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The sender's Ed25519 public signing key for this generation.
    pub fn signing_key(&self) -> [u8; KEY_LEN] {
        self.signing_key.to_bytes()
    }

    /// The 73-byte encoding (contains the chain key: a secret).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(DISTRIBUTION_LEN));
        out.push(SENDER_KEY_DISTRIBUTION_VERSION);
        out.extend_from_slice(&self.key_id.to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(self.chain_key.as_ref());
        out.extend_from_slice(&self.signing_key.to_bytes());
        out
    }

    /// Parses the 73-byte encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DistributionError> {
        let array: &[u8; DISTRIBUTION_LEN] =
            bytes
                .try_into()
                .map_err(|_| DistributionError::InvalidLength {
                    expected: DISTRIBUTION_LEN,
                    actual: bytes.len(),
                })?;
        let (version, rest) = array.split_at(1);
        let (key_id, rest) = rest.split_at(4);
        let (iteration, rest) = rest.split_at(4);
        let (chain_key, signing_key) = rest.split_at(KEY_LEN);
        if version != [SENDER_KEY_DISTRIBUTION_VERSION] {
            return Err(DistributionError::UnsupportedVersion(
                version.first().copied().unwrap_or_default(),
            ));
        }
        let iteration = u32::from_be_bytes(to_array(iteration));
        if iteration == u32::MAX {
            return Err(DistributionError::ReservedIteration);
        }
        let signing_key =
            parse_signing_key(signing_key).ok_or(DistributionError::InvalidSigningKey)?;
        Ok(Self {
            key_id: u32::from_be_bytes(to_array(key_id)),
            iteration,
            chain_key: Zeroizing::new(to_array(chain_key)),
            signing_key,
        })
    }
}

/// Copies a slice whose length the caller has fixed by `split_at`.
fn to_array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

/// A canonical Ed25519 point that is not of small order, as identity keys
/// require (SPEC.md §2).
pub(super) fn parse_signing_key(bytes: &[u8]) -> Option<VerifyingKey> {
    let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
    crate::identity::parse_ed25519_public(&array)
}

impl fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .field("signing_key", &hex_prefix(&self.signing_key.to_bytes()))
            .finish()
    }
}
