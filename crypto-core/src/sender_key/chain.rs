//! The sender chain's key derivation (SPEC.md §6.2): KDF_CK with HMAC-SHA256
//! and the expansion of a message key into the AEAD key and nonce.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{aead_open, aead_seal_in_place, hkdf_sha256, hmac_sha256};
use crate::labels::{
    CHAIN_MESSAGE_KEY_SEED, CHAIN_NEXT_KEY_SEED, KEY_LEN, NONCE_LEN, SENDER_KEY_MESSAGE_INFO,
    TAG_LEN,
};

/// A 32-byte chain key or message key, zeroized on drop.
pub(super) type SecretKey = Zeroizing<[u8; KEY_LEN]>;

/// One chain step: `(HMAC(ck, 0x01), HMAC(ck, 0x02))` = (message key, next chain key).
pub(super) fn step(chain_key: &[u8; KEY_LEN]) -> (SecretKey, SecretKey) {
    (
        hmac_sha256(chain_key, &[CHAIN_MESSAGE_KEY_SEED]),
        hmac_sha256(chain_key, &[CHAIN_NEXT_KEY_SEED]),
    )
}

/// The AEAD key and nonce expanded from one message key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(super) struct MessageKeys {
    pub(super) key: [u8; KEY_LEN],
    pub(super) nonce: [u8; NONCE_LEN],
}

impl MessageKeys {
    /// HKDF-SHA256(salt = none, ikm = message key, info = SENDER_KEY_MESSAGE_INFO)
    /// → 44 bytes: AEAD key (32) ‖ nonce (12).
    pub(super) fn expand(message_key: &[u8; KEY_LEN]) -> Self {
        let okm = hkdf_sha256::<{ KEY_LEN + NONCE_LEN }>(&[], message_key, SENDER_KEY_MESSAGE_INFO);
        let mut keys = Self {
            key: [0; KEY_LEN],
            nonce: [0; NONCE_LEN],
        };
        let (key, nonce) = okm.split_at(KEY_LEN);
        keys.key.copy_from_slice(key);
        keys.nonce.copy_from_slice(nonce);
        keys
    }

    /// Encrypts `buffer` (the plaintext) in place; returns the tag.
    pub(super) fn seal_in_place(&self, ad: &[u8], buffer: &mut [u8]) -> [u8; TAG_LEN] {
        aead_seal_in_place(&self.key, &self.nonce, ad, buffer)
    }

    pub(super) fn open(&self, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        aead_open(&self.key, &self.nonce, ad, sealed).ok()
    }
}
