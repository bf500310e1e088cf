//! Sealing the provisioning message of device linking (SPEC.md §12.14).
//!
//! The new device makes an ephemeral X25519 key pair
//! ([`ProvisioningKeyPair`]) and shows its public key with the server's slot
//! id. An existing device seals the provisioning message to that key with a
//! fresh ephemeral key of its own ([`seal`]); only the new device can open
//! it ([`ProvisioningKeyPair::open`]). The slot id is bound as associated
//! data, so a sealed message moved to another slot does not open.
//!
//! ```text
//! sealed   = 0x01 ‖ sender_ephemeral_public (32) ‖ ChaCha20-Poly1305(key, nonce, ad, plaintext) ‖ tag (16)
//! shared   = X25519(sender_ephemeral_secret, recipient_public)   (refused if all-zero)
//! key‖nonce = HKDF-SHA256(salt = "", ikm = shared ‖ sender_ephemeral_public ‖ recipient_public,
//!                         info = PROVISIONING_INFO, 44 bytes)
//! ad       = 0x01 ‖ slot_id
//! ```
//!
//! Each key pair opens one message: the sender's key is fresh per message,
//! so the derived key and nonce are never reused. Not owned here: the
//! plaintext's format (content.proto `ProvisionMessage`), the slot
//! (server), the code shown to the user (client).

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::CryptoRng;
use crate::dh::diffie_hellman;
use crate::kdf::{aead_open, aead_seal, hkdf_sha256};
use crate::labels::{KEY_LEN, NONCE_LEN, PROVISIONING_INFO, PROVISIONING_VERSION, TAG_LEN};

/// Bytes a sealed message adds to its plaintext (version, key, tag).
pub const SEALED_OVERHEAD: usize = 1 + KEY_LEN + TAG_LEN;

/// Why a provisioning message could not be sealed or opened. Opening fails
/// the same way whatever was wrong with the ciphertext, so nothing is
/// learnt from the error about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProvisioningError {
    /// The message is shorter than [`SEALED_OVERHEAD`] or has another version.
    #[error("not a sealed provisioning message of version 1")]
    Malformed,
    /// A public key of low order (the shared secret would be all-zero).
    #[error("the public key is not usable for key agreement")]
    WeakKey,
    /// Wrong key, wrong slot, or altered bytes.
    #[error("the provisioning message does not open with this key and slot")]
    AuthenticationFailed,
}

/// The new device's ephemeral key pair, kept while it waits for the message.
pub struct ProvisioningKeyPair {
    secret: StaticSecret,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for ProvisioningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisioningKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ProvisioningKeyPair {
    /// A fresh key pair.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(secret.as_mut());
        Self::from_secret(&secret)
    }

    /// The key pair of an X25519 secret (test vectors).
    pub fn from_secret(secret: &[u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(*secret);
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The public key to show in the provisioning code.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// Opens a message sealed to this key for `slot_id`.
    ///
    /// # Errors
    /// [`ProvisioningError`].
    pub fn open(
        &self,
        slot_id: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ProvisioningError> {
        if sealed.len() < SEALED_OVERHEAD || sealed[0] != PROVISIONING_VERSION {
            return Err(ProvisioningError::Malformed);
        }
        let (sender, body) = sealed[1..].split_at(KEY_LEN);
        let sender: [u8; KEY_LEN] = sender
            .try_into()
            .map_err(|_| ProvisioningError::Malformed)?;
        let shared = diffie_hellman(&self.secret, &PublicKey::from(sender))
            .map_err(|_| ProvisioningError::WeakKey)?;
        let (key, nonce) = derive(&shared, &sender, &self.public);
        aead_open(&key, &nonce, &associated_data(slot_id), body)
            .map(Zeroizing::new)
            .map_err(|_| ProvisioningError::AuthenticationFailed)
    }
}

/// Seals `plaintext` to `recipient` for `slot_id` with a fresh sender key.
///
/// # Errors
/// [`ProvisioningError::WeakKey`] for a low-order recipient key.
pub fn seal(
    rng: &mut impl CryptoRng,
    recipient: &[u8; KEY_LEN],
    slot_id: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ProvisioningError> {
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(secret.as_mut());
    seal_with_ephemeral(&secret, recipient, slot_id, plaintext)
}

/// [`seal`] with the sender's ephemeral secret given (test vectors; never
/// reuse a secret).
///
/// # Errors
/// [`ProvisioningError::WeakKey`] for a low-order recipient key.
pub fn seal_with_ephemeral(
    ephemeral_secret: &[u8; KEY_LEN],
    recipient: &[u8; KEY_LEN],
    slot_id: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ProvisioningError> {
    let secret = StaticSecret::from(*ephemeral_secret);
    let sender = PublicKey::from(&secret).to_bytes();
    let shared = diffie_hellman(&secret, &PublicKey::from(*recipient))
        .map_err(|_| ProvisioningError::WeakKey)?;
    let (key, nonce) = derive(&shared, &sender, recipient);
    let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
    out.push(PROVISIONING_VERSION);
    out.extend_from_slice(&sender);
    out.extend_from_slice(&aead_seal(
        &key,
        &nonce,
        &associated_data(slot_id),
        plaintext,
    ));
    Ok(out)
}

fn derive(
    shared: &[u8; KEY_LEN],
    sender: &[u8; KEY_LEN],
    recipient: &[u8; KEY_LEN],
) -> (Zeroizing<[u8; KEY_LEN]>, [u8; NONCE_LEN]) {
    let mut ikm = Zeroizing::new([0u8; 3 * KEY_LEN]);
    ikm[..KEY_LEN].copy_from_slice(shared);
    ikm[KEY_LEN..2 * KEY_LEN].copy_from_slice(sender);
    ikm[2 * KEY_LEN..].copy_from_slice(recipient);
    let okm = hkdf_sha256::<{ KEY_LEN + NONCE_LEN }>(&[], ikm.as_slice(), PROVISIONING_INFO);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&okm[..KEY_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[KEY_LEN..]);
    (key, nonce)
}

fn associated_data(slot_id: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(1 + slot_id.len());
    ad.push(PROVISIONING_VERSION);
    ad.extend_from_slice(slot_id);
    ad
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn opens_with_the_right_key_and_slot_only() {
        let mut rng = rng();
        let new_device = ProvisioningKeyPair::generate(&mut rng);
        let sealed = seal(&mut rng, &new_device.public(), b"slot-a", b"seed").unwrap();
        assert_eq!(sealed.len(), 4 + SEALED_OVERHEAD);
        assert_eq!(
            new_device.open(b"slot-a", &sealed).unwrap().as_slice(),
            b"seed"
        );
        assert_eq!(
            new_device.open(b"slot-b", &sealed),
            Err(ProvisioningError::AuthenticationFailed)
        );
        let other = ProvisioningKeyPair::generate(&mut rng);
        assert_eq!(
            other.open(b"slot-a", &sealed),
            Err(ProvisioningError::AuthenticationFailed)
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            new_device.open(b"slot-a", &flipped),
            Err(ProvisioningError::AuthenticationFailed)
        );
    }

    #[test]
    fn malformed_and_weak_inputs_are_refused() {
        let mut rng = rng();
        let new_device = ProvisioningKeyPair::generate(&mut rng);
        assert_eq!(
            new_device.open(b"s", &[1; SEALED_OVERHEAD - 1]),
            Err(ProvisioningError::Malformed)
        );
        let mut sealed = seal(&mut rng, &new_device.public(), b"s", b"x").unwrap();
        sealed[0] = 2;
        assert_eq!(
            new_device.open(b"s", &sealed),
            Err(ProvisioningError::Malformed)
        );
        // The all-zero point has low order.
        assert_eq!(
            seal(&mut rng, &[0; KEY_LEN], b"s", b"x"),
            Err(ProvisioningError::WeakKey)
        );
        let mut weak_sender = vec![PROVISIONING_VERSION];
        weak_sender.extend_from_slice(&[0; KEY_LEN + TAG_LEN]);
        assert_eq!(
            new_device.open(b"s", &weak_sender),
            Err(ProvisioningError::WeakKey)
        );
    }

    #[test]
    fn debug_prints_no_secret() {
        let pair = ProvisioningKeyPair::from_secret(&[0x42; KEY_LEN]);
        assert!(!format!("{pair:?}").contains("66, 66"));
    }
}
