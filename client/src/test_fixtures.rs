//! Fixtures the unit tests of the pure core share (compiled for tests
//! only): this device, and a prekey bundle made from real prekeys.

use ed25519_dalek::SigningKey;
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::prekeys::PreKeyBundle;

use crate::prekeys;
use crate::this_device::ThisDevice;

/// Device 1 of "alice", with a fresh identity.
pub(crate) fn alice_device() -> ThisDevice {
    ThisDevice {
        identity: IdentityKeyPair::generate(&mut rand::rng()),
        device_key: SigningKey::from_bytes(&[3; 32]),
        username: "alice".into(),
        device_id: 1,
    }
}

/// A bundle of a device of the account with identity `identity`.
pub(crate) fn bundle(identity: &IdentityKeyPair) -> PreKeyBundle {
    let keys = prekeys::initial(identity);
    PreKeyBundle {
        identity: *identity.public(),
        signed_prekey: keys.latest_signed().expect("signed").public().clone(),
        one_time_prekey: None,
        kem_prekey: keys.latest_kem().map(|k| k.public().clone()),
    }
}
