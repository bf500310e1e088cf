//! Kind `provisioning`: the sealed provisioning message of device linking
//! (SPEC.md §12.14).
//!
//! Input: the new device's X25519 secret, the existing device's ephemeral
//! X25519 secret, the slot id and the plaintext. Output: the new device's
//! public key (as its provisioning code carries it) and the sealed message,
//! which the new device's key must open again to the plaintext.

use microbot_crypto::provisioning::{ProvisioningKeyPair, seal, seal_with_ephemeral};
use microbot_protocol::content::{ProvisionMessage, ProvisionedContact, ProvisionedGroup};
use prost::Message as _;
use serde_json::Value;

use crate::hexbytes::{array, bytes, hex, object};
use crate::replay_rng::RecordingRng;
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "Device linking: the sealed provisioning message (X25519 + HKDF + ChaCha20-Poly1305, SPEC.md §12.14)";

/// Seals, then opens with the recipient's key to check the round trip.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let recipient = ProvisioningKeyPair::from_secret(&array::<32>(input, "recipient_secret")?);
    let ephemeral = array::<32>(input, "ephemeral_secret")?;
    let slot_id = bytes(input, "slot_id")?;
    let plaintext = bytes(input, "plaintext")?;
    let sealed = seal_with_ephemeral(&ephemeral, &recipient.public(), &slot_id, &plaintext)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    let opened = recipient
        .open(&slot_id, &sealed)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    if opened.as_slice() != plaintext.as_slice() {
        return Err(VectorError::Failed(
            "the sealed message does not open".into(),
        ));
    }
    Ok(object([
        ("recipient_public", hex(recipient.public())),
        ("sealed", hex(&sealed)),
    ]))
}

/// An encoded `ProvisionMessage` like the reference client sends.
fn provision_message() -> Vec<u8> {
    ProvisionMessage {
        username: "alice".into(),
        identity_seed: vec![0x11; 32].into(),
        contacts: vec![ProvisionedContact {
            username: "bob".into(),
            identity_key: vec![0x22; 32].into(),
        }],
        groups: vec![ProvisionedGroup {
            group_id: vec![0x33; 16].into(),
            metadata_key: vec![0x44; 32].into(),
        }],
        history: Vec::new(),
    }
    .encode_to_vec()
}

/// A short text, an empty plaintext and a full `ProvisionMessage`.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x70);
    let cases: [(&str, Vec<u8>); 3] = [
        ("short-plaintext", b"microbot provisioning".to_vec()),
        ("empty-plaintext", Vec::new()),
        ("provision-message", provision_message()),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, plaintext))| {
            let recipient = ProvisioningKeyPair::generate(&mut rng);
            let slot_id = [u8::try_from(i).unwrap_or(0); 16];
            seal(&mut rng, &recipient.public(), &slot_id, &plaintext)
                .map_err(|e| VectorError::Failed(e.to_string()))?;
            let draws = rng.take_draws();
            let input = object([
                ("recipient_secret", hex(&draws[0])),
                ("ephemeral_secret", hex(&draws[1])),
                ("slot_id", hex(slot_id)),
                ("plaintext", hex(&plaintext)),
            ]);
            Ok(Vector {
                name: name.into(),
                output: compute(&input)?,
                input,
            })
        })
        .collect()
}
