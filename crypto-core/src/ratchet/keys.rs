//! The Double Ratchet's key types and its three KDFs (SPEC.md §5.3):
//! KDF_RK (root step), KDF_CK (chain step) and the expansion of a message key
//! into a ChaCha20-Poly1305 key and nonce.
//!
//! Every secret lives in a boxed array, so moving a key (into a map, out of a
//! staged decryption) moves a pointer and never leaves a stray copy behind;
//! the array is zeroized when the key is dropped. This module does not own
//! the session's state machine or the wire format.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{hkdf_sha256, hmac_sha256};
use crate::labels::{
    CHAIN_MESSAGE_KEY_SEED, CHAIN_NEXT_KEY_SEED, KEY_LEN, NONCE_LEN, RATCHET_MESSAGE_INFO,
    RATCHET_ROOT_INFO,
};

/// A 32-byte secret on the heap, zeroized on drop.
#[derive(Clone)]
pub(crate) struct Secret32(Box<[u8; KEY_LEN]>);

impl Secret32 {
    /// Copies `bytes` into a fresh boxed secret.
    pub(crate) fn new(bytes: &[u8; KEY_LEN]) -> Self {
        Self(Box::new(*bytes))
    }

    /// Copies the first `KEY_LEN` bytes of a 64-byte KDF output half.
    fn from_half(half: &[u8]) -> Self {
        let mut out = Box::new([0u8; KEY_LEN]);
        // Callers pass exactly one half of a 64-byte array, a fixed length.
        out.copy_from_slice(half);
        Self(out)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Secret32 {}

/// The root key RK.
#[derive(Clone)]
pub(crate) struct RootKey(pub(crate) Secret32);

/// A sending or receiving chain key CK.
#[derive(Clone)]
pub(crate) struct ChainKey(pub(crate) Secret32);

/// A message key MK: used for exactly one message.
#[derive(Clone)]
pub(crate) struct MessageKey(pub(crate) Secret32);

/// The AEAD key and nonce a message key expands to.
pub(crate) struct MessageSecrets {
    pub(crate) aead_key: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) nonce: [u8; NONCE_LEN],
}

/// KDF_RK: HKDF-SHA256(salt = RK, ikm = DH output, info = RATCHET_ROOT_INFO),
/// 64 bytes split into the next root key and a new chain key.
pub(crate) fn kdf_rk(root_key: &RootKey, dh_output: &[u8; KEY_LEN]) -> (RootKey, ChainKey) {
    let okm = hkdf_sha256::<{ 2 * KEY_LEN }>(root_key.0.as_bytes(), dh_output, RATCHET_ROOT_INFO);
    let (root, chain) = okm.split_at(KEY_LEN);
    (
        RootKey(Secret32::from_half(root)),
        ChainKey(Secret32::from_half(chain)),
    )
}

impl ChainKey {
    /// KDF_CK, first half: MK = HMAC-SHA256(CK, 0x01).
    pub(crate) fn message_key(&self) -> MessageKey {
        MessageKey(Secret32::new(&hmac_sha256(
            self.0.as_bytes(),
            &[CHAIN_MESSAGE_KEY_SEED],
        )))
    }

    /// KDF_CK, second half: CK' = HMAC-SHA256(CK, 0x02).
    pub(crate) fn next(&self) -> ChainKey {
        ChainKey(Secret32::new(&hmac_sha256(
            self.0.as_bytes(),
            &[CHAIN_NEXT_KEY_SEED],
        )))
    }
}

impl MessageKey {
    /// HKDF-SHA256(salt = 32 zero bytes, ikm = MK, info = RATCHET_MESSAGE_INFO)
    /// to 44 bytes: the ChaCha20-Poly1305 key, then the nonce.
    pub(crate) fn expand(&self) -> MessageSecrets {
        let okm = hkdf_sha256::<{ KEY_LEN + NONCE_LEN }>(
            &[0u8; KEY_LEN],
            self.0.as_bytes(),
            RATCHET_MESSAGE_INFO,
        );
        let (key, nonce_bytes) = okm.split_at(KEY_LEN);
        let mut aead_key = Zeroizing::new([0u8; KEY_LEN]);
        aead_key.copy_from_slice(key);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(nonce_bytes);
        MessageSecrets { aead_key, nonce }
    }
}
