//! X25519 Diffie-Hellman that refuses non-contributory results.
//!
//! A peer key of low order makes the shared secret all-zero (or independent of
//! our secret); such a result is refused (SPEC.md §3), never fed to a KDF.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::identity::KeyError;

/// `X25519(secret, public)`, refusing an all-zero (non-contributory) output.
pub(crate) fn diffie_hellman(
    secret: &StaticSecret,
    public: &PublicKey,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let shared = secret.diffie_hellman(public);
    if !shared.was_contributory() {
        return Err(KeyError::NonContributoryDh);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}
