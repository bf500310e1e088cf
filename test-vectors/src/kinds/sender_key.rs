//! Kind `sender_key`: one sender's generation of a group key (SPEC.md §6):
//! the distribution message, several signed group messages with every
//! intermediate value, and a receiver opening them out of order.
//!
//! Input: `group_id`, the sender's draws for `OutboundSenderKey::create`
//! (4-byte key id, 32-byte chain key, 32-byte signing seed), the plaintexts,
//! and `receive_order` (indices). Output: the distribution bytes, every
//! message's trace, the plaintexts in receive order, and the persisted states
//! (SPEC.md §6.7) at the end: the sender's `OutboundSenderKeyState`, the
//! receiver's `InboundSenderKeyState` and its `SenderKeyRecordState`.

use microbot_crypto::sender_key::{GroupId, InboundSenderKey, OutboundSenderKey, SenderKeyRecord};
use serde_json::Value;

use crate::hexbytes::{byte_list, bytes, hex, object};
use crate::replay_rng::{RecordingRng, ReplayRng};
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str =
    "Sender Keys: distribution, signed group messages, out-of-order receive (SPEC.md §6)";

fn failed(e: impl std::fmt::Display) -> VectorError {
    VectorError::Failed(e.to_string())
}

/// Replays the sender's draws, encrypts every plaintext, receives them in order.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let group_id = GroupId::new(&bytes(input, "group_id")?).map_err(failed)?;
    let mut rng = ReplayRng::new(byte_list(input, "sender_draws")?);
    let mut outbound = OutboundSenderKey::create(&mut rng, group_id.clone());
    rng.finish().map_err(VectorError::Failed)?;
    let distribution = outbound.distribution();
    let mut record = SenderKeyRecord::new();
    record.add(InboundSenderKey::new(group_id, &distribution));
    let mut messages = Vec::new();
    let mut wire = Vec::new();
    for plaintext in byte_list(input, "plaintexts")? {
        let trace = outbound.encrypt_traced(&plaintext).map_err(failed)?;
        messages.push(object([
            ("key_id", Value::from(trace.key_id)),
            ("iteration", Value::from(trace.iteration)),
            ("chain_key", hex(trace.chain_key)),
            ("message_key", hex(trace.message_key)),
            ("aead_key", hex(trace.aead_key)),
            ("nonce", hex(trace.nonce)),
            ("associated_data", hex(&trace.associated_data)),
            ("ciphertext", hex(&trace.ciphertext)),
            ("signature", hex(trace.signature)),
            ("message", hex(&trace.message)),
        ]));
        wire.push(trace.message.clone());
    }
    let order = input
        .get("receive_order")
        .and_then(Value::as_array)
        .ok_or_else(|| VectorError::MissingField("receive_order".into()))?;
    let mut received = Vec::new();
    for index in order {
        let message = index
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| wire.get(i))
            .ok_or_else(|| VectorError::BadField("receive_order".into()))?;
        received.push(hex(record.decrypt(message).map_err(failed)?));
    }
    let inbound = record
        .generation(distribution.key_id())
        .ok_or_else(|| VectorError::Failed("generation missing".into()))?;
    // Persisted states (SPEC.md §6.7) after the last encrypt and receive.
    Ok(object([
        ("distribution", hex(&*distribution.to_bytes())),
        ("messages", Value::from(messages)),
        ("received", Value::from(received)),
        ("outbound_state", hex(&*outbound.to_bytes())),
        ("inbound_state", hex(&*inbound.to_bytes())),
        ("record_state", hex(&*record.to_bytes())),
    ]))
}

/// One generation, six messages, received out of order.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x40);
    let group_id = GroupId::new(b"vector group").map_err(failed)?;
    let _ = OutboundSenderKey::create(&mut rng, group_id.clone());
    let plaintexts: Vec<Value> = (0..6)
        .map(|i| hex(format!("group message {i}").as_bytes()))
        .collect();
    let input = object([
        ("group_id", hex(group_id.as_bytes())),
        (
            "sender_draws",
            Value::from(rng.take_draws().iter().map(hex).collect::<Vec<_>>()),
        ),
        ("plaintexts", Value::from(plaintexts)),
        ("receive_order", Value::from(vec![0, 3, 1, 5, 2, 4])),
    ]);
    Ok(vec![Vector {
        name: "six-messages-out-of-order".into(),
        output: compute(&input)?,
        input,
    }])
}
