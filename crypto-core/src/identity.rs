//! The account identity: one Ed25519 key pair (SPEC.md §3).
//!
//! The handshake uses the identity's X25519 form, obtained by the standard
//! birational map: the secret scalar is the first half of SHA-512(seed)
//! (clamped by X25519 itself), the public key is the Montgomery form of the
//! Ed25519 point. One key is therefore one safety number.
//!
//! This module does not own prekeys or sessions; it only signs, verifies and
//! performs the identity's Diffie-Hellman.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::labels::{KEY_LEN, SIGNATURE_LEN};

/// What was wrong with a key or signature handed to this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes have the wrong length for this kind of key or signature.
    #[error("wrong length: expected {expected} bytes, got {actual}")]
    InvalidLength {
        /// Length the format requires.
        expected: usize,
        /// Length that was given.
        actual: usize,
    },
    /// The bytes are not a valid Ed25519 point, or the point has small order.
    #[error("not a valid public key (malformed or of small order)")]
    InvalidPublicKey,
    /// The Diffie-Hellman result was all zero: the peer key has low order.
    #[error("Diffie-Hellman with this peer key is not contributory (low-order key)")]
    NonContributoryDh,
    /// The signature does not verify under the claimed key.
    #[error("signature does not verify")]
    BadSignature,
}

/// The public half of an identity: an Ed25519 verifying key, with its X25519
/// (Montgomery) form computed once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey {
    ed25519: VerifyingKey,
    x25519: PublicKey,
}

impl IdentityKey {
    /// Parses the 32-byte compressed Ed25519 encoding. Refuses malformed
    /// points and points of small order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyError::InvalidLength {
            expected: KEY_LEN,
            actual: bytes.len(),
        })?;
        let ed25519 = parse_ed25519_public(&array).ok_or(KeyError::InvalidPublicKey)?;
        Ok(Self::from_verifying_key(ed25519))
    }

    fn from_verifying_key(ed25519: VerifyingKey) -> Self {
        let x25519 = PublicKey::from(ed25519.to_montgomery().to_bytes());
        Self { ed25519, x25519 }
    }

    /// The 32-byte compressed Ed25519 encoding (the identity on the wire).
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.ed25519.to_bytes()
    }

    /// The X25519 form used in the handshake.
    pub fn x25519(&self) -> &PublicKey {
        &self.x25519
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.ed25519
    }

    /// Verifies `signature` over `message` (strict RFC 8032 verification:
    /// non-canonical and small-order components are refused).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        verify_ed25519(&self.ed25519, message, signature)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", hex_prefix(&self.to_bytes()))
    }
}

/// An Ed25519 public key as SPEC.md §2 accepts it: a point encoding that
/// decompresses, is canonical (re-encoding the point gives the same 32
/// bytes, so `y < p` and no "negative zero"), and is not of small order
/// (`[8]A ≠ identity`). Points with a small-order component but large order
/// are accepted, as RFC 8032 does. Shared by identities and sender keys.
pub(crate) fn parse_ed25519_public(bytes: &[u8; KEY_LEN]) -> Option<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    let canonical = key.to_edwards().compress().to_bytes() == *bytes;
    (canonical && !key.is_weak()).then_some(key)
}

/// Strict Ed25519 verification shared by identities and sender keys
/// (SPEC.md §2), with exactly the outcome of ed25519-dalek's
/// `verify_strict`, cofactorless: `s` must be below ℓ; `R` must decompress
/// and not have small order; the key must not have small order; and
/// `[s]B − [k]A`, re-encoded, must equal the 32 bytes of `R` (so a
/// non-canonical `R` never verifies), with `k = SHA-512(R ‖ A ‖ message) mod ℓ`
/// over the bytes as received.
///
/// `verify_strict` decompresses `R` (a field exponentiation, ~10 % of a
/// verification) only to test it for small order. That is not needed: the
/// final comparison accepts only the canonical encoding of the recomputed
/// point, which always decompresses, and a canonical encoding is of a
/// small-order point exactly when it is one of the eight in
/// [`SMALL_ORDER_ENCODINGS`]. So refusing those eight byte strings, then
/// running the library's cofactorless check (`s < ℓ`, recompute, compare
/// bytes), accepts and refuses the same signatures as `verify_strict`.
/// `tests/ed25519_strict.rs` checks the two against each other.
pub(crate) fn verify_ed25519(
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), KeyError> {
    let array: [u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| KeyError::InvalidLength {
        expected: SIGNATURE_LEN,
        actual: signature.len(),
    })?;
    let r = array
        .first_chunk::<KEY_LEN>()
        .ok_or(KeyError::BadSignature)?;
    if key.is_weak() || SMALL_ORDER_ENCODINGS.contains(r) {
        return Err(KeyError::BadSignature);
    }
    let signature = Signature::from_bytes(&array);
    key.verify(message, &signature)
        .map_err(|_| KeyError::BadSignature)
}

/// The canonical encodings of the eight points of small order (the 8-torsion
/// subgroup): the identity, the point of order 2, the two of order 4 and the
/// four of order 8. A unit test derives them from curve25519-dalek's
/// `EIGHT_TORSION`.
const SMALL_ORDER_ENCODINGS: [[u8; KEY_LEN]; 8] = [
    small_order_encoding(0x01, 0x00, 0x00),
    small_order_encoding(0xec, 0xff, 0x7f),
    small_order_encoding(0x00, 0x00, 0x00),
    small_order_encoding(0x00, 0x00, 0x80),
    ORDER_8_A,
    flip_sign(ORDER_8_A),
    ORDER_8_B,
    flip_sign(ORDER_8_B),
];

/// `y = 1`, `y = −1` and `y = 0` (x = ±√−1): first byte, filler, last byte.
const fn small_order_encoding(first: u8, fill: u8, last: u8) -> [u8; KEY_LEN] {
    let mut bytes = [fill; KEY_LEN];
    bytes[0] = first;
    bytes[KEY_LEN - 1] = last;
    bytes
}

/// The encoding of the other point with the same `y` (x negated).
const fn flip_sign(mut bytes: [u8; KEY_LEN]) -> [u8; KEY_LEN] {
    bytes[KEY_LEN - 1] ^= 0x80;
    bytes
}

const ORDER_8_A: [u8; KEY_LEN] = [
    0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
    0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
];
const ORDER_8_B: [u8; KEY_LEN] = [
    0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
    0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
];

#[cfg(test)]
mod small_order_tests {
    use curve25519_dalek::constants::EIGHT_TORSION;

    use super::SMALL_ORDER_ENCODINGS;

    #[test]
    fn the_blocklist_is_exactly_the_eight_torsion_points() {
        let mut expected: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|p| p.compress().to_bytes())
            .collect();
        let mut listed = SMALL_ORDER_ENCODINGS.to_vec();
        expected.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, expected);
    }
}

/// First four bytes in hex: enough to tell public keys apart in logs.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

/// An identity key pair. The secret is zeroized on drop and never printed.
pub struct IdentityKeyPair {
    signing: SigningKey,
    x25519_secret: StaticSecret,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// Draws a new identity from `rng` (32 random bytes: the Ed25519 seed).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Rebuilds an identity from its 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let x25519_secret = StaticSecret::from(*Zeroizing::new(signing.to_scalar_bytes()));
        let public = IdentityKey::from_verifying_key(signing.verifying_key());
        Self {
            signing,
            x25519_secret,
            public,
        }
    }

    /// The 32-byte seed, for persistence. Handle with care: it is the identity.
    pub fn to_seed(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> &IdentityKey {
        &self.public
    }

    /// Signs `message` with the identity (deterministic Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// X25519 of the identity's secret with `peer`, refusing low-order peers.
    pub(crate) fn diffie_hellman(&self, peer: &PublicKey) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        crate::dh::diffie_hellman(&self.x25519_secret, peer)
    }

    /// Serialises to the versioned `IdentityState` message (SPEC.md §9.3).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        use prost::Message;
        let state = IdentityState {
            version: crate::labels::STATE_VERSION,
            seed: self.signing.to_bytes().to_vec(),
        };
        Zeroizing::new(state.encode_to_vec())
    }

    /// Restores an identity from [`IdentityKeyPair::to_bytes`]; refuses other
    /// versions and seeds that are not 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityStateError> {
        use prost::Message;
        let state = IdentityState::decode(bytes).map_err(|_| IdentityStateError::Malformed)?;
        if state.version != crate::labels::STATE_VERSION {
            return Err(IdentityStateError::UnsupportedVersion(state.version));
        }
        let seed: Zeroizing<[u8; KEY_LEN]> = <[u8; KEY_LEN]>::try_from(state.seed.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| IdentityStateError::Malformed)?;
        Ok(Self::from_seed(&seed))
    }

    /// Constant-time equality of two identities' secrets.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.signing
            .to_bytes()
            .ct_eq(&other.signing.to_bytes())
            .into()
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why persisted identity bytes could not be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityStateError {
    /// Not an `IdentityState` message, or the seed is not 32 bytes.
    #[error("persisted identity is malformed")]
    Malformed,
    /// Written by another format version.
    #[error("persisted identity has unsupported version {0}")]
    UnsupportedVersion(u32),
}

/// Persisted form of an identity (SPEC.md §9.3).
#[derive(Clone, PartialEq, prost::Message, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct IdentityState {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    seed: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_debug_hides_secret() {
        let id = IdentityKeyPair::generate(&mut rand::rng());
        let sig = id.sign(b"hello");
        id.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            id.public().verify(b"hellp", &sig),
            Err(KeyError::BadSignature)
        );
        let seed_hex: String = id.to_seed().iter().map(|b| format!("{b:02x}")).collect();
        let debug = format!("{id:?}");
        assert!(!debug.contains(&seed_hex[..8]), "{debug}");
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn x25519_form_agrees_on_both_sides() {
        let a = IdentityKeyPair::generate(&mut rand::rng());
        let b = IdentityKeyPair::generate(&mut rand::rng());
        let ab = a.diffie_hellman(b.public().x25519()).unwrap();
        let ba = b.diffie_hellman(a.public().x25519()).unwrap();
        assert_eq!(*ab, *ba);
    }

    #[test]
    fn roundtrip_public_and_seed() {
        let id = IdentityKeyPair::generate(&mut rand::rng());
        let again = IdentityKeyPair::from_seed(&id.to_seed());
        assert!(id.ct_eq(&again));
        assert_eq!(
            IdentityKey::from_bytes(&id.public().to_bytes()).unwrap(),
            *id.public()
        );
    }

    #[test]
    fn persisted_identity_round_trips_and_refuses_bad_bytes() {
        let id = IdentityKeyPair::generate(&mut rand::rng());
        let restored = IdentityKeyPair::from_bytes(&id.to_bytes()).unwrap();
        assert!(id.ct_eq(&restored));
        assert_eq!(
            IdentityKeyPair::from_bytes(b"\x08\x02").unwrap_err(),
            IdentityStateError::UnsupportedVersion(2)
        );
        assert_eq!(
            IdentityKeyPair::from_bytes(b"\x08\x01\x12\x01\x00").unwrap_err(),
            IdentityStateError::Malformed
        );
        assert_eq!(
            IdentityKeyPair::from_bytes(b"\xff").unwrap_err(),
            IdentityStateError::Malformed
        );
    }

    #[test]
    fn low_order_keys_are_refused() {
        // The identity point (0,1) encodes as 0x01 followed by zeros: small order.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(
            IdentityKey::from_bytes(&identity_point),
            Err(KeyError::InvalidPublicKey)
        );
        let id = IdentityKeyPair::generate(&mut rand::rng());
        // u = 0 and u = 1 are low-order X25519 points.
        for u in [[0u8; 32], identity_point] {
            assert_eq!(
                id.diffie_hellman(&PublicKey::from(u)).unwrap_err(),
                KeyError::NonContributoryDh
            );
        }
        assert!(matches!(
            IdentityKey::from_bytes(&[0u8; 31]),
            Err(KeyError::InvalidLength {
                expected: 32,
                actual: 31
            })
        ));
    }
}
