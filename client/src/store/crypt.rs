//! Encryption at rest of the local store.
//!
//! A store opened with a passphrase derives its 32-byte store key with
//! Argon2id (salt: 16 random bytes kept in the store; parameters kept too),
//! and seals every secret or private value — identity seed, device key,
//! prekeys, sessions, message bodies, outbox payloads — with
//! ChaCha20-Poly1305 under a fresh random 12-byte nonce. The associated data
//! names what the value is and which row it belongs to, so sealed values
//! cannot be swapped between rows.
//!
//! ```text
//! blob = 0x00 ‖ value                       (store without passphrase)
//!      | 0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)
//! ```
//! Usernames, device ids, message ids and times stay in the clear (they
//! index the tables). Not owned here: the SQL.

use argon2::{Algorithm, Argon2, Params, Version};
use microbot_crypto::kdf::{aead_open, aead_seal};
use rand::Rng as _;
use zeroize::Zeroizing;

use crate::config::KdfParams;
use crate::error::{OpenError, StoreError};

const PLAIN: u8 = 0x00;
const SEALED: u8 = 0x01;
const NONCE_LEN: usize = 12;

/// Associated data of the key-check value.
pub(crate) const KEY_CHECK_AD: &[u8] = b"microbot store key check v1";
/// The value sealed as key check.
pub(crate) const KEY_CHECK_VALUE: &[u8] = b"microbot";

/// Seals and opens stored values.
pub(crate) enum Sealer {
    /// No passphrase: values are stored as they are (with the 0x00 prefix).
    Plain,
    /// Values are sealed under this key.
    Sealed(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sealer::Plain => "Sealer::Plain",
            Sealer::Sealed(_) => "Sealer::Sealed",
        })
    }
}

/// Derives the store key from a passphrase.
pub(crate) fn derive_key(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, OpenError> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| OpenError::KdfParams(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| OpenError::KdfParams(e.to_string()))?;
    Ok(key)
}

impl Sealer {
    /// Seals `value` for the row described by `ad`.
    pub(crate) fn seal(&self, ad: &[u8], value: &[u8]) -> Vec<u8> {
        match self {
            Sealer::Plain => {
                let mut out = Vec::with_capacity(value.len() + 1);
                out.push(PLAIN);
                out.extend_from_slice(value);
                out
            }
            Sealer::Sealed(key) => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::rng().fill_bytes(&mut nonce);
                let sealed = aead_seal(key, &nonce, ad, value);
                let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
                out.push(SEALED);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&sealed);
                out
            }
        }
    }

    /// Opens a blob written by [`Sealer::seal`] with the same `ad`.
    pub(crate) fn open(
        &self,
        what: &'static str,
        ad: &[u8],
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match (self, blob.split_first()) {
            (Sealer::Plain, Some((&PLAIN, value))) => Ok(Zeroizing::new(value.to_vec())),
            (Sealer::Sealed(key), Some((&SEALED, rest))) => {
                let (nonce, sealed) = rest
                    .split_first_chunk::<NONCE_LEN>()
                    .ok_or(StoreError::Corrupt { what })?;
                aead_open(key, nonce, ad, sealed)
                    .map(Zeroizing::new)
                    .map_err(|_| StoreError::Tampered { what })
            }
            _ => Err(StoreError::Corrupt { what }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let cheap = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let key = derive_key("correct horse", b"0123456789abcdef", cheap).unwrap();
        let sealer = Sealer::Sealed(key);
        let blob = sealer.seal(b"row 1", b"secret");
        assert_eq!(&*sealer.open("x", b"row 1", &blob).unwrap(), b"secret");
        assert!(matches!(
            sealer.open("x", b"row 2", &blob),
            Err(StoreError::Tampered { .. })
        ));
        let other = Sealer::Sealed(derive_key("wrong horse", b"0123456789abcdef", cheap).unwrap());
        assert!(other.open("x", b"row 1", &blob).is_err());
        assert!(Sealer::Plain.open("x", b"row 1", &blob).is_err());
        let plain = Sealer::Plain.seal(b"row", b"value");
        assert_eq!(&*Sealer::Plain.open("x", b"row", &plain).unwrap(), b"value");
    }
}
