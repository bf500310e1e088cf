//! Kind `ratchet`: a whole Double Ratchet conversation (SPEC.md §5) with
//! out-of-order delivery, a dropped-then-late message and several DH steps.
//!
//! Input: SK, AD, Bob's first ratchet private key (his signed prekey), each
//! party's random draws in order (Alice: her first ratchet key, then one key
//! per DH step she takes on receive; Bob: one key per DH step), and a script
//! of steps: `{"op":"encrypt","from":"alice"|"bob","plaintext":hex}` creates
//! message number `k` (counting encrypts from 0); `{"op":"deliver","message":k}`
//! hands it to the other party. Output: for every message, every value that
//! made it; for every delivery, the plaintext and the values that opened it;
//! both parties' persisted `RatchetState` (SPEC.md §5.7) at the end.

use microbot_crypto::ratchet::{MessageTrace, RatchetSession, RootStepTrace};
use serde_json::Value;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::hexbytes::{array, byte_list, bytes, hex, object, string, uint};
use crate::replay_rng::{RecordingRng, ReplayRng};
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str =
    "Double Ratchet conversations with out-of-order delivery and DH ratchet steps (SPEC.md §5)";

/// One root step as vectors spell it (also used by kind `session`).
pub(super) fn root_step(step: &RootStepTrace) -> Value {
    object([
        ("own_ratchet_key", hex(step.own_ratchet_key)),
        ("remote_ratchet_key", hex(step.remote_ratchet_key)),
        ("dh_output", hex(step.dh_output)),
        ("previous_root_key", hex(step.previous_root_key)),
        ("root_key", hex(step.root_key)),
        ("chain_key", hex(step.chain_key)),
    ])
}

fn message_trace(trace: &MessageTrace) -> Value {
    object([
        (
            "root_steps",
            Value::from(trace.root_steps.iter().map(root_step).collect::<Vec<_>>()),
        ),
        ("header", hex(trace.header)),
        (
            "chain_key",
            hex(trace.chain_key.map(|k| k.to_vec()).unwrap_or_default()),
        ),
        ("message_key", hex(trace.message_key)),
        ("aead_key", hex(trace.aead_key)),
        ("nonce", hex(trace.nonce)),
        ("associated_data", hex(&trace.associated_data)),
        ("sealed", hex(&trace.sealed)),
    ])
}

fn failed(e: impl std::fmt::Display) -> VectorError {
    VectorError::Failed(e.to_string())
}

/// Replays the script and reports every value.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let shared_secret: [u8; 32] = array(input, "shared_secret")?;
    let associated_data = bytes(input, "associated_data")?;
    let bob_first = StaticSecret::from(array::<32>(input, "bob_ratchet_private_key")?);
    let bob_first_public = PublicKey::from(&bob_first);
    let mut alice_rng = ReplayRng::new(byte_list(input, "alice_draws")?);
    let mut bob_rng = ReplayRng::new(byte_list(input, "bob_draws")?);
    let (mut alice, initial) = RatchetSession::new_initiator_traced(
        &mut alice_rng,
        &shared_secret,
        &associated_data,
        &bob_first_public,
    )
    .map_err(failed)?;
    let mut bob = RatchetSession::new_responder(&shared_secret, &associated_data, bob_first);

    let steps = input
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| VectorError::MissingField("steps".into()))?;
    let mut messages: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut message_out = Vec::new();
    let mut delivery_out = Vec::new();
    for step in steps {
        match string(step, "op")? {
            "encrypt" => {
                let from_alice = string(step, "from")? == "alice";
                let plaintext = bytes(step, "plaintext")?;
                let (session, rng) = if from_alice {
                    (&mut alice, &mut alice_rng)
                } else {
                    (&mut bob, &mut bob_rng)
                };
                let (message, trace) = session.encrypt_traced(rng, &plaintext).map_err(failed)?;
                let mut value = message_trace(&trace);
                value["message"] = hex(&message);
                message_out.push(value);
                messages.push((from_alice, message));
            }
            "deliver" => {
                let index = usize::try_from(uint(step, "message")?)
                    .map_err(|_| VectorError::BadField("message".into()))?;
                let (from_alice, message) = messages
                    .get(index)
                    .ok_or_else(|| VectorError::BadField("message".into()))?;
                let (session, rng) = if *from_alice {
                    (&mut bob, &mut bob_rng)
                } else {
                    (&mut alice, &mut alice_rng)
                };
                let (plaintext, trace) = session.decrypt_traced(rng, message).map_err(failed)?;
                let mut value = message_trace(&trace);
                value["message_index"] = Value::from(index);
                value["plaintext"] = hex(&plaintext);
                delivery_out.push(value);
            }
            _ => return Err(VectorError::BadField("op".into())),
        }
    }
    alice_rng.finish().map_err(VectorError::Failed)?;
    bob_rng.finish().map_err(VectorError::Failed)?;
    // Persisted states (SPEC.md §5.7) at the end of the conversation.
    Ok(object([
        ("alice_initial_root_step", root_step(&initial)),
        ("messages", Value::from(message_out)),
        ("deliveries", Value::from(delivery_out)),
        ("alice_state", hex(&*alice.to_bytes())),
        ("bob_state", hex(&*bob.to_bytes())),
    ]))
}

/// One conversation of 26 messages: bursts in both directions, reordering,
/// a message delivered after its chain was superseded, and 8 DH steps.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    // (sender is alice, count, delivery order within the burst, held back)
    let bursts: [(bool, usize, &[usize]); 9] = [
        (true, 3, &[0, 2, 1]),
        (false, 2, &[1, 0]),
        (true, 4, &[3, 0, 2]), // message 1 of this burst is held back
        (false, 1, &[0]),
        (true, 2, &[0, 1]),
        (false, 5, &[4, 3, 2, 1, 0]),
        (true, 3, &[2, 0, 1]),
        (false, 3, &[0, 1, 2]),
        (true, 3, &[1, 2, 0]),
    ];
    let mut setup = RecordingRng::from_seed_byte(0x30);
    let mut draw = |n: usize| {
        let mut buffer = vec![0u8; n];
        rand_core::Rng::fill_bytes(&mut setup, &mut buffer);
        buffer
    };
    let shared_secret = draw(32);
    let associated_data = draw(64);
    let bob_first = draw(32);
    let mut steps = Vec::new();
    let mut next_index = 0usize;
    let mut held_back = None;
    for (burst, (from_alice, count, order)) in bursts.iter().enumerate() {
        let first = next_index;
        for i in 0..*count {
            let text = format!(
                "{} message {} of burst {burst}",
                if *from_alice { "alice" } else { "bob" },
                i
            );
            steps.push(object([
                ("op", Value::from("encrypt")),
                (
                    "from",
                    Value::from(if *from_alice { "alice" } else { "bob" }),
                ),
                ("plaintext", hex(text.as_bytes())),
            ]));
            next_index += 1;
        }
        for &i in order.iter() {
            steps.push(object([
                ("op", Value::from("deliver")),
                ("message", Value::from(first + i)),
            ]));
        }
        if burst == 2 {
            held_back = Some(first + 1);
        }
        if burst == 4
            && let Some(late) = held_back.take()
        {
            steps.push(object([
                ("op", Value::from("deliver")),
                ("message", Value::from(late)),
            ]));
        }
    }
    // Run once with recording RNGs to learn each party's draws.
    let (alice_draws, bob_draws) =
        record_draws(&shared_secret, &associated_data, &bob_first, &steps)?;
    let input = object([
        ("shared_secret", hex(&shared_secret)),
        ("associated_data", hex(&associated_data)),
        ("bob_ratchet_private_key", hex(&bob_first)),
        (
            "alice_draws",
            Value::from(alice_draws.iter().map(hex).collect::<Vec<_>>()),
        ),
        (
            "bob_draws",
            Value::from(bob_draws.iter().map(hex).collect::<Vec<_>>()),
        ),
        ("steps", Value::from(steps)),
    ]);
    let output = compute(&input)?;
    Ok(vec![Vector {
        name: "conversation-26-messages".into(),
        input,
        output,
    }])
}

type Draws = Vec<Vec<u8>>;

fn record_draws(
    shared_secret: &[u8],
    associated_data: &[u8],
    bob_first: &[u8],
    steps: &[Value],
) -> Result<(Draws, Draws), VectorError> {
    let secret: [u8; 32] = shared_secret
        .try_into()
        .map_err(|_| VectorError::BadField("shared_secret".into()))?;
    let bob_key: [u8; 32] = bob_first
        .try_into()
        .map_err(|_| VectorError::BadField("bob".into()))?;
    let bob_first = StaticSecret::from(bob_key);
    let mut alice_rng = RecordingRng::from_seed_byte(0x31);
    let mut bob_rng = RecordingRng::from_seed_byte(0x32);
    let mut alice = RatchetSession::new_initiator(
        &mut alice_rng,
        &secret,
        associated_data,
        &PublicKey::from(&bob_first),
    )
    .map_err(failed)?;
    let mut bob = RatchetSession::new_responder(&secret, associated_data, bob_first);
    let mut messages: Vec<(bool, Vec<u8>)> = Vec::new();
    for step in steps {
        if string(step, "op")? == "encrypt" {
            let from_alice = string(step, "from")? == "alice";
            let plaintext = bytes(step, "plaintext")?;
            let message = if from_alice {
                alice.encrypt(&mut alice_rng, &plaintext)
            } else {
                bob.encrypt(&mut bob_rng, &plaintext)
            }
            .map_err(failed)?;
            messages.push((from_alice, message));
        } else {
            let index = usize::try_from(uint(step, "message")?)
                .map_err(|_| VectorError::BadField("message".into()))?;
            let (from_alice, message) = messages
                .get(index)
                .ok_or_else(|| VectorError::BadField("message".into()))?;
            if *from_alice {
                bob.decrypt(&mut bob_rng, message)
            } else {
                alice.decrypt(&mut alice_rng, message)
            }
            .map_err(failed)?;
        }
    }
    Ok((alice_rng.take_draws(), bob_rng.take_draws()))
}
