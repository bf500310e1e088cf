//! Safety numbers (SPEC.md §8), in the style of Signal's numeric fingerprints.
//!
//! Each party's fingerprint is SHA-512 iterated
//! [`FINGERPRINT_ITERATIONS`] times: the first input is
//! `version (u16 BE) ‖ identity key (32) ‖ stable user id`, and every round
//! hashes `previous ‖ identity key`. Its first 30 bytes become 30 digits
//! (six 5-byte big-endian chunks, each mod 100 000); the safety number is the
//! two parties' 30 digits in ascending order, so both sides see the same 60
//! digits. The first 32 bytes of each hash form the QR payload.
//!
//! This module does not own identities or user ids, nor decide what a client
//! does when a safety number changes.

use std::fmt;

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::identity::IdentityKey;
use crate::labels::{
    FINGERPRINT_DISPLAY_BYTES, FINGERPRINT_ITERATIONS, FINGERPRINT_SCANNABLE_LEN,
    FINGERPRINT_VERSION,
};

/// Length of the QR payload: version (2) ‖ two 32-byte fingerprints.
pub const QR_PAYLOAD_LEN: usize = 2 + 2 * FINGERPRINT_SCANNABLE_LEN;
/// Digits in a safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;

/// Why a scanned QR payload could not be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// The payload is not exactly 66 bytes.
    #[error("safety-number QR payload must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// The only valid length.
        expected: usize,
        /// Length that was scanned.
        actual: usize,
    },
    /// The other side uses a different fingerprint version.
    #[error("safety-number version {theirs} differs from ours ({ours})")]
    VersionMismatch {
        /// Version in the payload.
        theirs: u16,
        /// Version this implementation computes.
        ours: u16,
    },
}

/// The safety number of a conversation between a local and a remote identity.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    local: [u8; FINGERPRINT_SCANNABLE_LEN],
    remote: [u8; FINGERPRINT_SCANNABLE_LEN],
    digits: String,
}

impl SafetyNumber {
    /// Computes the safety number from the local and remote identity keys and
    /// their stable user ids (for example the UTF-8 user name). Costs
    /// 2 × [`FINGERPRINT_ITERATIONS`] SHA-512 calls.
    pub fn new(
        local_identity: &IdentityKey,
        local_user_id: &[u8],
        remote_identity: &IdentityKey,
        remote_user_id: &[u8],
    ) -> Self {
        let local_hash = iterated_hash(local_identity, local_user_id);
        let remote_hash = iterated_hash(remote_identity, remote_user_id);
        let local_digits = digits(&local_hash);
        let remote_digits = digits(&remote_hash);
        let digits = if local_digits <= remote_digits {
            local_digits + &remote_digits
        } else {
            remote_digits + &local_digits
        };
        Self {
            local: prefix(&local_hash),
            remote: prefix(&remote_hash),
            digits,
        }
    }

    /// The 60 digits, without separators.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The 60 digits as 12 groups of 5 separated by single spaces.
    pub fn display(&self) -> String {
        self.groups().join(" ")
    }

    /// The 12 groups of 5 digits.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups = Vec::with_capacity(SAFETY_NUMBER_DIGITS / 5);
        let mut rest = self.digits.as_str();
        while !rest.is_empty() {
            // The string holds ASCII digits only, so byte 5 is a char boundary.
            let (group, tail) = rest.split_at(rest.len().min(5));
            groups.push(group);
            rest = tail;
        }
        groups
    }

    /// The payload to show as a QR code: `version (u16 BE) ‖ local
    /// fingerprint (32) ‖ remote fingerprint (32)`, from the shower's side.
    pub fn qr_payload(&self) -> [u8; QR_PAYLOAD_LEN] {
        let mut payload = [0u8; QR_PAYLOAD_LEN];
        let (version, rest) = payload.split_at_mut(2);
        let (first, second) = rest.split_at_mut(FINGERPRINT_SCANNABLE_LEN);
        version.copy_from_slice(&FINGERPRINT_VERSION.to_be_bytes());
        first.copy_from_slice(&self.local);
        second.copy_from_slice(&self.remote);
        payload
    }

    /// Compares a payload scanned from the other side's screen with ours: it
    /// must hold their fingerprint first and ours second. `Ok(true)` when both
    /// match (compared in constant time), `Ok(false)` when they differ.
    #[must_use = "a mismatch means the identities are not the ones both sides expect"]
    pub fn verify_scanned(&self, payload: &[u8]) -> Result<bool, FingerprintError> {
        let payload: &[u8; QR_PAYLOAD_LEN] =
            payload
                .try_into()
                .map_err(|_| FingerprintError::InvalidLength {
                    expected: QR_PAYLOAD_LEN,
                    actual: payload.len(),
                })?;
        let (version, rest) = payload.split_at(2);
        let (theirs, ours) = rest.split_at(FINGERPRINT_SCANNABLE_LEN);
        let version = u16::from_be_bytes([
            version.first().copied().unwrap_or_default(),
            version.get(1).copied().unwrap_or_default(),
        ]);
        if version != FINGERPRINT_VERSION {
            return Err(FingerprintError::VersionMismatch {
                theirs: version,
                ours: FINGERPRINT_VERSION,
            });
        }
        let same = theirs.ct_eq(&self.remote) & ours.ct_eq(&self.local);
        Ok(same.into())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({})", self.display())
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// `H_0 = version ‖ key ‖ user id`; `H_{n+1} = SHA-512(H_n ‖ key)`, n < iterations.
fn iterated_hash(identity: &IdentityKey, user_id: &[u8]) -> [u8; 64] {
    let key = identity.to_bytes();
    let mut hash = Vec::with_capacity(2 + key.len() + user_id.len());
    hash.extend_from_slice(&FINGERPRINT_VERSION.to_be_bytes());
    hash.extend_from_slice(&key);
    hash.extend_from_slice(user_id);
    let mut output = [0u8; 64];
    for round in 0..FINGERPRINT_ITERATIONS {
        let mut hasher = Sha512::new();
        if round == 0 {
            hasher.update(&hash);
        } else {
            hasher.update(output);
        }
        hasher.update(key);
        output = hasher.finalize().into();
    }
    output
}

/// Six 5-byte big-endian chunks of the first 30 bytes, each mod 100 000, as
/// zero-padded 5-digit groups.
fn digits(hash: &[u8; 64]) -> String {
    hash.iter()
        .take(FINGERPRINT_DISPLAY_BYTES)
        .collect::<Vec<_>>()
        .chunks(5)
        .map(|chunk| {
            let value = chunk
                .iter()
                .fold(0u64, |acc, &&b| (acc << 8) | u64::from(b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

fn prefix(hash: &[u8; 64]) -> [u8; FINGERPRINT_SCANNABLE_LEN] {
    let mut out = [0u8; FINGERPRINT_SCANNABLE_LEN];
    out.copy_from_slice(hash.split_at(FINGERPRINT_SCANNABLE_LEN).0);
    out
}
