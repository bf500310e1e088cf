//! Kind `x3dh`: the handshake, classical and hybrid (SPEC.md §4), on both sides.
//!
//! Input: each party's random draws in the order SPEC.md gives. Bob (the
//! responder) draws: identity seed (32), signed prekey secret (32), then one
//! one-time prekey secret (32) if `with_one_time`, then one ML-KEM seed (64) if
//! `with_kem`. Alice draws: identity seed (32), EK_A (32), then `m` (32) in
//! hybrid mode. `signed_prekey_id` is always given (it is signed, with the
//! `kem_flag`); `one_time_prekey_id` and `kem_prekey_id` exactly when that
//! key exists (the KEM id is signed too). Output: every public value, every DH
//! output, the KEM ciphertext and secret, SK and AD.

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::handshake::{self, HandshakeMode};
use microbot_crypto::prekeys::{
    KemPreKey, LocalPreKeys, OneTimePreKey, PreKeyBundle, SignedPreKey,
};
use serde_json::Value;

use crate::hexbytes::{byte_list, hex, object, uint};
use crate::replay_rng::{RecordingRng, ReplayRng};
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str =
    "X3DH, and X3DH hybrid with ML-KEM-768 (PQXDH), both sides (SPEC.md §4)";

fn flag(input: &Value, name: &str) -> Result<bool, VectorError> {
    input
        .get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| VectorError::MissingField(name.into()))
}

fn id(input: &Value, name: &str) -> Result<u32, VectorError> {
    u32::try_from(uint(input, name)?).map_err(|_| VectorError::BadField(name.into()))
}

/// Replays the draws through both sides and reports every value.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let (with_one_time, with_kem) = (flag(input, "with_one_time")?, flag(input, "with_kem")?);
    let mut bob_rng = ReplayRng::new(byte_list(input, "bob_draws")?);
    let bob = IdentityKeyPair::generate(&mut bob_rng);
    // The signed prekey's kem_flag (SPEC.md §4.1) is 0x01 exactly when Bob publishes a KEM prekey.
    let signed_id = id(input, "signed_prekey_id")?;
    let signed = if with_kem {
        SignedPreKey::generate(&mut bob_rng, &bob, signed_id)
    } else {
        SignedPreKey::generate_classical(&mut bob_rng, &bob, signed_id)
    };
    let one_time = with_one_time
        .then(|| id(input, "one_time_prekey_id").map(|i| OneTimePreKey::generate(&mut bob_rng, i)))
        .transpose()?;
    let kem = with_kem
        .then(|| id(input, "kem_prekey_id").map(|i| KemPreKey::generate(&mut bob_rng, &bob, i)))
        .transpose()?;
    bob_rng.finish().map_err(VectorError::Failed)?;

    let bundle = PreKeyBundle {
        identity: *bob.public(),
        signed_prekey: signed.public().clone(),
        one_time_prekey: one_time.as_ref().map(|k| *k.public()),
        kem_prekey: kem.as_ref().map(|k| k.public().clone()),
    };
    let mut alice_rng = ReplayRng::new(byte_list(input, "alice_draws")?);
    let alice = IdentityKeyPair::generate(&mut alice_rng);
    let (out_a, header) = handshake::initiate(&mut alice_rng, &alice, &bundle)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    alice_rng.finish().map_err(VectorError::Failed)?;

    let mut prekeys = LocalPreKeys::new();
    prekeys.add_signed(signed.clone());
    if let Some(key) = &one_time {
        prekeys.add_one_time(key.clone());
    }
    if let Some(key) = &kem {
        prekeys.add_kem(key.clone());
    }
    let (out_b, _) = handshake::respond(&bob, &prekeys, &header)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    if *out_a.shared_secret != *out_b.shared_secret
        || out_a.associated_data != out_b.associated_data
    {
        return Err(VectorError::Failed(
            "initiator and responder disagree".into(),
        ));
    }
    let mode = match out_a.mode {
        HandshakeMode::Classical => "classical",
        HandshakeMode::Hybrid => "hybrid",
    };
    let (kem_public, kem_signature) = kem
        .as_ref()
        .map(|k| (k.public().public_key.clone(), k.public().signature.to_vec()))
        .unwrap_or_default();
    Ok(object([
        ("mode", Value::from(mode)),
        ("alice_identity_key", hex(alice.public().to_bytes())),
        ("bob_identity_key", hex(bob.public().to_bytes())),
        ("signed_prekey_public", hex(signed.public().public_key)),
        ("signed_prekey_signature", hex(signed.public().signature)),
        (
            "one_time_prekey_public",
            hex(one_time
                .map(|k| k.public().public_key.to_vec())
                .unwrap_or_default()),
        ),
        ("kem_prekey_public", hex(kem_public)),
        ("kem_prekey_signature", hex(kem_signature)),
        ("base_key", hex(header.base_key)),
        ("dh1", hex(&*out_a.trace.dh1)),
        ("dh2", hex(&*out_a.trace.dh2)),
        ("dh3", hex(&*out_a.trace.dh3)),
        ("dh4", hex(&*out_a.trace.dh4)),
        (
            "kem_ciphertext",
            hex(header.kem.map(|k| k.1).unwrap_or_default()),
        ),
        ("kem_shared_secret", hex(&*out_a.trace.kem_shared_secret)),
        ("shared_secret", hex(*out_a.shared_secret)),
        ("associated_data", hex(&out_a.associated_data)),
    ]))
}

/// The four combinations of one-time prekey and KEM prekey.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut vectors = Vec::new();
    for (i, (with_one_time, with_kem)) in
        [(true, false), (false, false), (true, true), (false, true)]
            .into_iter()
            .enumerate()
    {
        let seed = u8::try_from(0x10 + i).unwrap_or(0x10);
        let mut bob_rng = RecordingRng::from_seed_byte(seed);
        let bob = IdentityKeyPair::generate(&mut bob_rng);
        let _ = SignedPreKey::generate_classical(&mut bob_rng, &bob, 1);
        if with_one_time {
            let _ = OneTimePreKey::generate(&mut bob_rng, 100);
        }
        let kem = with_kem.then(|| KemPreKey::generate(&mut bob_rng, &bob, 7));
        let mut alice_rng = RecordingRng::from_seed_byte(seed.wrapping_add(0x80));
        let alice = IdentityKeyPair::generate(&mut alice_rng);
        // Alice's handshake draws: EK_A, then m in hybrid mode.
        let mut extra = [0u8; 32];
        rand_core::Rng::fill_bytes(&mut alice_rng, &mut extra);
        if kem.is_some() {
            rand_core::Rng::fill_bytes(&mut alice_rng, &mut extra);
        }
        drop(alice);
        let mut input = object([
            ("with_one_time", Value::from(with_one_time)),
            ("with_kem", Value::from(with_kem)),
            ("signed_prekey_id", Value::from(1)),
            (
                "bob_draws",
                Value::from(bob_rng.take_draws().iter().map(hex).collect::<Vec<_>>()),
            ),
            (
                "alice_draws",
                Value::from(alice_rng.take_draws().iter().map(hex).collect::<Vec<_>>()),
            ),
        ]);
        // An id is given exactly when its key exists (SPEC.md §17.1).
        if with_one_time {
            input["one_time_prekey_id"] = Value::from(100);
        }
        if with_kem {
            input["kem_prekey_id"] = Value::from(7);
        }
        let output = compute(&input)?;
        let name = format!(
            "{}-{}",
            if with_kem { "hybrid" } else { "classical" },
            if with_one_time {
                "with-one-time-prekey"
            } else {
                "without-one-time-prekey"
            }
        );
        vectors.push(Vector {
            name,
            input,
            output,
        });
    }
    Ok(vectors)
}
