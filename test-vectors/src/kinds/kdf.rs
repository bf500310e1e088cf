//! Kind `kdf`: HKDF-SHA256 and HMAC-SHA256 as the ratchet uses them
//! (SPEC.md §2, §5.2): KDF_RK, KDF_CK and the message-key expansion.

use microbot_crypto::kdf::{hkdf_sha256, hmac_sha256};
use microbot_crypto::labels;
use serde_json::Value;

use crate::hexbytes::{array, bytes, hex, object, string, uint};
use crate::replay_rng::RecordingRng;
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "HKDF-SHA256 with explicit lengths, KDF_RK, KDF_CK and message-key expansion (SPEC.md §2, §5.2)";

/// `input.op` selects: `hkdf` {salt, ikm, info, length ∈ 32|44|64} → {okm};
/// `root_step` {root_key, dh_output} → {root_key, chain_key};
/// `chain_step` {chain_key} → {message_key, next_chain_key, aead_key, nonce}.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    match string(input, "op")? {
        "hkdf" => {
            let (salt, ikm, info) = (
                bytes(input, "salt")?,
                bytes(input, "ikm")?,
                bytes(input, "info")?,
            );
            let okm = match uint(input, "length")? {
                32 => hkdf_sha256::<32>(&salt, &ikm, &info).to_vec(),
                44 => hkdf_sha256::<44>(&salt, &ikm, &info).to_vec(),
                64 => hkdf_sha256::<64>(&salt, &ikm, &info).to_vec(),
                _ => return Err(VectorError::BadField("length".into())),
            };
            Ok(object([("okm", hex(okm))]))
        }
        "root_step" => {
            let root_key: [u8; 32] = array(input, "root_key")?;
            let dh_output: [u8; 32] = array(input, "dh_output")?;
            let okm = hkdf_sha256::<64>(&root_key, &dh_output, labels::RATCHET_ROOT_INFO);
            Ok(object([
                ("root_key", hex(&okm[..32])),
                ("chain_key", hex(&okm[32..])),
            ]))
        }
        "chain_step" => {
            let chain_key: [u8; 32] = array(input, "chain_key")?;
            let message_key = hmac_sha256(&chain_key, &[labels::CHAIN_MESSAGE_KEY_SEED]);
            let next = hmac_sha256(&chain_key, &[labels::CHAIN_NEXT_KEY_SEED]);
            let expanded =
                hkdf_sha256::<44>(&[], message_key.as_ref(), labels::RATCHET_MESSAGE_INFO);
            Ok(object([
                ("message_key", hex(message_key.as_ref())),
                ("next_chain_key", hex(next.as_ref())),
                ("aead_key", hex(&expanded[..32])),
                ("nonce", hex(&expanded[32..])),
            ]))
        }
        _ => Err(VectorError::BadField("op".into())),
    }
}

/// Draws inputs from a seeded RNG and computes outputs.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x01);
    let mut draw = |n: usize| {
        let mut buffer = vec![0u8; n];
        rand_core::Rng::fill_bytes(&mut rng, &mut buffer);
        buffer
    };
    let mut inputs = vec![
        (
            "hkdf-rfc5869-case-1".to_owned(),
            object([
                ("op", Value::from("hkdf")),
                (
                    "salt",
                    hex(hex::decode("000102030405060708090a0b0c").unwrap_or_default()),
                ),
                ("ikm", hex([0x0b; 22])),
                (
                    "info",
                    hex(hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap_or_default()),
                ),
                ("length", Value::from(32)),
            ]),
        ),
        (
            "hkdf-no-salt-44".to_owned(),
            object([
                ("op", Value::from("hkdf")),
                ("salt", hex([])),
                ("ikm", hex(draw(32))),
                ("info", hex(labels::RATCHET_MESSAGE_INFO)),
                ("length", Value::from(44)),
            ]),
        ),
    ];
    for i in 0..3 {
        inputs.push((
            format!("root-step-{i}"),
            object([
                ("op", Value::from("root_step")),
                ("root_key", hex(draw(32))),
                ("dh_output", hex(draw(32))),
            ]),
        ));
    }
    // A chain of five steps: each input is the previous output's next key.
    let mut chain_key = draw(32);
    for i in 0..5 {
        let input = object([
            ("op", Value::from("chain_step")),
            ("chain_key", hex(&chain_key)),
        ]);
        let output = compute(&input)?;
        chain_key = bytes(&output, "next_chain_key")?;
        inputs.push((format!("chain-step-{i}"), input));
    }
    inputs
        .into_iter()
        .map(|(name, input)| {
            let output = compute(&input)?;
            Ok(Vector {
                name,
                input,
                output,
            })
        })
        .collect()
}
