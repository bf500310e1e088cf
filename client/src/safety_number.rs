//! Safety numbers (SPEC.md §8, crypto-core `fingerprint`): the number this
//! account and a contact compare to check each other's identity key.
//! Not owned here: deciding when an identity changed (sessions.rs,
//! receive.rs).

use microbot_crypto::fingerprint::SafetyNumber;
use microbot_crypto::{IdentityKey, IdentityKeyPair};

/// The safety number between us (`identity`, `our_name`) and `username`
/// with identity `key`; `None` when `key` is not a valid identity key.
pub(crate) fn between(
    identity: &IdentityKeyPair,
    our_name: &str,
    username: &str,
    key: &[u8; 32],
) -> Option<SafetyNumber> {
    let remote = IdentityKey::from_bytes(key).ok()?;
    Some(SafetyNumber::new(
        identity.public(),
        our_name.as_bytes(),
        &remote,
        username.as_bytes(),
    ))
}
