//! The store's key: set up when a store is created (a passphrase or
//! none, fixed then), and checked each time it is opened. The salt, the
//! key-derivation parameters and a sealed key check are plain meta values,
//! so any backend holds what unlocking needs.
//!
//! Not owned here: sealing itself (crypt.rs).

use rand::Rng as _;

use super::backend::Backend;
use super::crypt::{self, Sealer};
use crate::config::{KdfParams, StoreConfig};
use crate::error::{OpenError, StoreError};

/// Reads or sets up the store's key.
pub(super) fn unlock(backend: &mut dyn Backend, config: &StoreConfig) -> Result<Sealer, OpenError> {
    let mut tx = backend.begin()?;
    let encrypted = tx.meta("encrypted")?;
    let sealer = match (encrypted.as_deref(), &config.passphrase) {
        // A new store: fix its protection now.
        (None, None) => {
            tx.put_meta("encrypted", &[0])?;
            Sealer::Plain
        }
        (None, Some(passphrase)) => {
            let mut salt = [0u8; 16];
            rand::rng().fill_bytes(&mut salt);
            let key = crypt::derive_key(passphrase, &salt, config.kdf)?;
            let sealer = Sealer::Sealed(key);
            let check = sealer.seal(crypt::KEY_CHECK_AD, crypt::KEY_CHECK_VALUE);
            let kdf = encode_kdf(config.kdf);
            for (key, value) in [
                ("encrypted", vec![1u8]),
                ("kdf_salt", salt.to_vec()),
                ("kdf_params", kdf),
                ("key_check", check),
            ] {
                tx.put_meta(key, &value)?;
            }
            sealer
        }
        (Some([0]), None) => Sealer::Plain,
        (Some([0]), Some(_)) => return Err(OpenError::NotEncrypted),
        (Some([1]), None) => return Err(OpenError::PassphraseRequired),
        (Some([1]), Some(passphrase)) => {
            let corrupt = || {
                OpenError::Store(StoreError::Corrupt {
                    what: "store key parameters",
                })
            };
            let salt = tx.meta("kdf_salt")?.ok_or_else(corrupt)?;
            let kdf =
                decode_kdf(&tx.meta("kdf_params")?.ok_or_else(corrupt)?).ok_or_else(corrupt)?;
            let check = tx.meta("key_check")?.ok_or_else(corrupt)?;
            let sealer = Sealer::Sealed(crypt::derive_key(passphrase, &salt, kdf)?);
            match sealer.open("key check", crypt::KEY_CHECK_AD, &check) {
                Ok(value) if value.as_slice() == crypt::KEY_CHECK_VALUE => sealer,
                Ok(_) | Err(StoreError::Tampered { .. }) => {
                    return Err(OpenError::WrongPassphrase);
                }
                Err(other) => return Err(other.into()),
            }
        }
        (Some(_), _) => {
            return Err(OpenError::Store(StoreError::Corrupt {
                what: "store protection flag",
            }));
        }
    };
    tx.commit()?;
    Ok(sealer)
}

fn encode_kdf(kdf: KdfParams) -> Vec<u8> {
    [kdf.memory_kib, kdf.iterations, kdf.parallelism]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

fn decode_kdf(bytes: &[u8]) -> Option<KdfParams> {
    let (m, rest) = bytes.split_first_chunk::<4>()?;
    let (t, rest) = rest.split_first_chunk::<4>()?;
    let (p, rest) = rest.split_first_chunk::<4>()?;
    rest.is_empty().then(|| KdfParams {
        memory_kib: u32::from_be_bytes(*m),
        iterations: u32::from_be_bytes(*t),
        parallelism: u32::from_be_bytes(*p),
    })
}
