//! The symmetric primitives every module shares: HKDF-SHA256, HMAC-SHA256 and
//! ChaCha20-Poly1305 (SPEC.md §2). Thin wrappers so each call site names its
//! label and lengths, and nothing else.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The AEAD refused a ciphertext: wrong key, wrong associated data, or tampered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "authentication failed: the ciphertext or its associated data was altered, or the key is wrong"
)]
pub struct AeadError;

/// HKDF-SHA256 (RFC 5869) extract-then-expand of `ikm` into `N` bytes.
/// `salt` empty means the RFC's default (zero-filled) salt.
pub fn hkdf_sha256<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    let hk = Hkdf::<Sha256>::new(if salt.is_empty() { None } else { Some(salt) }, ikm);
    // N is a compile-time constant far below HKDF-SHA256's 8160-byte limit.
    #[allow(clippy::expect_used)]
    hk.expand(info, out.as_mut())
        .expect("HKDF output length is a small constant");
    out
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// ChaCha20-Poly1305 seal: returns `ciphertext ‖ tag`.
pub fn aead_seal(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(plaintext.len() + crate::labels::TAG_LEN);
    buffer.extend_from_slice(plaintext);
    let tag = aead_seal_in_place(key, nonce, ad, &mut buffer);
    buffer.extend_from_slice(&tag);
    buffer
}

/// ChaCha20-Poly1305 seal in place: `buffer` holds the plaintext and is left
/// holding the ciphertext; returns the tag.
pub(crate) fn aead_seal_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    ad: &[u8],
    buffer: &mut [u8],
) -> [u8; crate::labels::TAG_LEN] {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    // ChaCha20-Poly1305 refuses only plaintexts over 256 GiB; every caller
    // seals at most one message or one attachment segment.
    #[allow(clippy::expect_used)]
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(*nonce), ad, buffer.into())
        .expect("plaintext is far below the ChaCha20-Poly1305 limit");
    tag.into()
}

/// ChaCha20-Poly1305 open of `ciphertext ‖ tag`.
pub fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    ad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let tag_len = crate::labels::TAG_LEN;
    if sealed.len() < tag_len {
        return Err(AeadError);
    }
    let (body, tag) = sealed.split_at(sealed.len() - tag_len);
    let mut buffer = body.to_vec();
    aead_open_in_place(key, nonce, ad, &mut buffer, tag)?;
    Ok(buffer)
}

/// ChaCha20-Poly1305 open in place: `buffer` holds the ciphertext without
/// its tag. The tag is checked before anything is decrypted, so on error
/// `buffer` still holds the ciphertext; on success it holds the plaintext.
pub(crate) fn aead_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    ad: &[u8],
    buffer: &mut [u8],
    tag: &[u8],
) -> Result<(), AeadError> {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| AeadError)?;
    cipher
        .decrypt_inout_detached(&Nonce::from(*nonce), ad, buffer.into(), &tag)
        .map_err(|_| AeadError)
}
