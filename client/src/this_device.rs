//! Who this device is (SPEC.md §13, §8): the account's identity key pair
//! (shared by every device of the account), the account's username, and
//! this device's id and login key, and the safety number it shares with a
//! contact. What the pure core needs to know about
//! "us"; it holds no connection and no store. Nothing here is printed
//! (`Debug` is not implemented: the keys are secret).

use ed25519_dalek::SigningKey;
use microbot_crypto::fingerprint::SafetyNumber;
use microbot_crypto::{IdentityKey, IdentityKeyPair};

/// This device of this account.
pub(crate) struct ThisDevice {
    /// The account's identity (secret).
    pub(crate) identity: IdentityKeyPair,
    /// This device's login key (secret).
    pub(crate) device_key: SigningKey,
    /// The account's username.
    pub(crate) username: String,
    /// This device's id.
    pub(crate) device_id: u64,
}

impl ThisDevice {
    /// The safety number (SPEC.md §8, crypto-core `fingerprint`) between
    /// us and `username` with identity `key`; `None` when `key` is not a
    /// valid identity key.
    pub(crate) fn safety_number_with(
        &self,
        username: &str,
        key: &[u8; 32],
    ) -> Option<SafetyNumber> {
        let remote = IdentityKey::from_bytes(key).ok()?;
        Some(SafetyNumber::new(
            self.identity.public(),
            self.username.as_bytes(),
            &remote,
            username.as_bytes(),
        ))
    }
}
