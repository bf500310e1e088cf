//! Kind `safety_number`: the numeric safety number and QR payload (SPEC.md §8)
//! of two identities with their stable user ids, computed from both sides.

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::fingerprint::SafetyNumber;
use serde_json::Value;

use crate::hexbytes::{array, bytes, hex, object};
use crate::replay_rng::RecordingRng;
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "Safety numbers: digits and QR payloads from both sides (SPEC.md §8)";

/// Computes both sides' numbers; they must agree on the digits.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let alice = IdentityKeyPair::from_seed(&array::<32>(input, "alice_identity_seed")?);
    let bob = IdentityKeyPair::from_seed(&array::<32>(input, "bob_identity_seed")?);
    let (alice_uid, bob_uid) = (bytes(input, "alice_user_id")?, bytes(input, "bob_user_id")?);
    let from_alice = SafetyNumber::new(alice.public(), &alice_uid, bob.public(), &bob_uid);
    let from_bob = SafetyNumber::new(bob.public(), &bob_uid, alice.public(), &alice_uid);
    if from_alice.digits() != from_bob.digits() {
        return Err(VectorError::Failed("the two sides disagree".into()));
    }
    Ok(object([
        ("digits", Value::from(from_alice.digits())),
        ("display", Value::from(from_alice.display())),
        ("alice_qr_payload", hex(from_alice.qr_payload())),
        ("bob_qr_payload", hex(from_bob.qr_payload())),
    ]))
}

/// Two pairs of identities.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x60);
    (0..2)
        .map(|i| {
            let _ = IdentityKeyPair::generate(&mut rng);
            let _ = IdentityKeyPair::generate(&mut rng);
            let draws = rng.take_draws();
            let input = object([
                ("alice_identity_seed", hex(&draws[0])),
                ("bob_identity_seed", hex(&draws[1])),
                ("alice_user_id", hex(format!("alice{i}").as_bytes())),
                ("bob_user_id", hex(format!("bob{i}").as_bytes())),
            ]);
            Ok(Vector {
                name: format!("pair-{i}"),
                output: compute(&input)?,
                input,
            })
        })
        .collect()
}
