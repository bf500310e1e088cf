//! Kind `session`: a whole 1:1 session from the prekey bundle on (SPEC.md
//! §4.3, §5, §9): the handshake's `SK` and `AD` feed the ratchet, every
//! `SessionMessage` is pinned byte for byte (`PreKeyMessage`s while the
//! initiator awaits a reply, then `RatchetMessage`s), and so are the persisted
//! states (`LocalPreKeysState` §9.1, `SessionState` §9.2 with its
//! `RatchetState` §5.7, `IdentityState` §9.3).
//!
//! Input: each party's random draws in order. Bob: identity seed (32),
//! signed prekey (32), one one-time prekey (32), KEM seed (64), then one
//! ratchet key (32) per DH step he takes on receive. Alice: identity seed
//! (32), EK_A (32), `m` (32), her first ratchet key (32), then one per DH
//! step on receive. Prekey ids, and `steps` as in the `ratchet` kind
//! (`{"op":"encrypt","from","plaintext"}`, `{"op":"deliver","message":k}`);
//! Bob's first delivery builds his session (`Session::accept`). Output
//! `handshake` shows the hand-off: SK, AD, and Alice's first root step, whose
//! `previous_root_key` is SK.

use microbot_crypto::handshake::HandshakeMode;
use microbot_crypto::prekeys::{
    KemPreKey, LocalPreKeys, OneTimePreKey, PreKeyBundle, SignedPreKey,
};
use microbot_crypto::session::Session;
use microbot_crypto::{CryptoRng, IdentityKeyPair};
use serde_json::Value;

use crate::hexbytes::{byte_list, bytes, hex, object, string, uint};
use crate::replay_rng::{RecordingRng, ReplayRng};
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "1:1 sessions from the bundle on: SessionMessage bytes (PreKeyMessage, RatchetMessage), SK and AD into the ratchet, persisted states (SPEC.md §4.3, §5.7, §9)";

fn failed(e: impl std::fmt::Display) -> VectorError {
    VectorError::Failed(e.to_string())
}

fn id(input: &Value, name: &str) -> Result<u32, VectorError> {
    u32::try_from(uint(input, name)?).map_err(|_| VectorError::BadField(name.into()))
}

/// Replays both parties and reports every message and state.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let mut alice_rng = ReplayRng::new(byte_list(input, "alice_draws")?);
    let mut bob_rng = ReplayRng::new(byte_list(input, "bob_draws")?);
    let output = run(input, &mut alice_rng, &mut bob_rng)?;
    alice_rng.finish().map_err(VectorError::Failed)?;
    bob_rng.finish().map_err(VectorError::Failed)?;
    Ok(output)
}

/// The script of `input` with each party drawing from its own RNG.
fn run<A: CryptoRng, B: CryptoRng>(
    input: &Value,
    alice_rng: &mut A,
    bob_rng: &mut B,
) -> Result<Value, VectorError> {
    let bob = IdentityKeyPair::generate(bob_rng);
    let signed = SignedPreKey::generate(bob_rng, &bob, id(input, "signed_prekey_id")?);
    let one_time = OneTimePreKey::generate(bob_rng, id(input, "one_time_prekey_id")?);
    let kem = KemPreKey::generate(bob_rng, &bob, id(input, "kem_prekey_id")?);
    let bundle = PreKeyBundle {
        identity: *bob.public(),
        signed_prekey: signed.public().clone(),
        one_time_prekey: Some(*one_time.public()),
        kem_prekey: Some(kem.public().clone()),
    };
    let mut bob_prekeys = LocalPreKeys::new();
    bob_prekeys.add_signed(signed);
    bob_prekeys.add_one_time(one_time);
    bob_prekeys.add_kem(kem);
    let prekeys_before = hex(&*bob_prekeys.to_bytes());

    let alice = IdentityKeyPair::generate(alice_rng);
    let (mut alice_session, trace) =
        Session::initiate_traced(alice_rng, &alice, &bundle).map_err(failed)?;
    // The hand-off SPEC.md §4.2 → §5.2: SK is the first root step's previous root key.
    let handshake = object([
        ("shared_secret", hex(*trace.shared_secret)),
        ("associated_data", hex(&trace.associated_data)),
        (
            "alice_initial_root_step",
            super::ratchet::root_step(&trace.initial_root_step),
        ),
    ]);
    if alice_session.mode() != HandshakeMode::Hybrid {
        return Err(failed("expected a hybrid session"));
    }
    let alice_pending_state = hex(&*alice_session.to_bytes());
    let mut bob_session: Option<Session> = None;

    let steps = input
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| VectorError::MissingField("steps".into()))?;
    let mut messages: Vec<(bool, Vec<u8>)> = Vec::new();
    let mut deliveries = Vec::new();
    for step in steps {
        match string(step, "op")? {
            "encrypt" => {
                let from_alice = string(step, "from")? == "alice";
                let plaintext = bytes(step, "plaintext")?;
                let message = if from_alice {
                    alice_session.encrypt(alice_rng, &plaintext)
                } else {
                    let session = bob_session.as_mut().ok_or_else(|| failed("bob first"))?;
                    session.encrypt(bob_rng, &plaintext)
                }
                .map_err(failed)?;
                messages.push((from_alice, message));
            }
            "deliver" => {
                let index = usize::try_from(uint(step, "message")?)
                    .map_err(|_| VectorError::BadField("message".into()))?;
                let (from_alice, message) = messages
                    .get(index)
                    .ok_or_else(|| VectorError::BadField("message".into()))?;
                let plaintext = match (from_alice, bob_session.as_mut()) {
                    (false, _) => alice_session.decrypt(alice_rng, message),
                    (true, Some(session)) => session.decrypt(bob_rng, message),
                    (true, None) => Session::accept(bob_rng, &bob, &mut bob_prekeys, message).map(
                        |(session, plaintext)| {
                            bob_session = Some(session);
                            plaintext
                        },
                    ),
                }
                .map_err(failed)?;
                deliveries.push(object([
                    ("message_index", Value::from(index)),
                    ("plaintext", hex(&plaintext)),
                ]));
            }
            _ => return Err(VectorError::BadField("op".into())),
        }
    }
    let bob_session = bob_session.ok_or_else(|| failed("bob never received"))?;
    Ok(object([
        ("handshake", handshake),
        ("alice_identity_state", hex(&*alice.to_bytes())),
        ("bob_identity_state", hex(&*bob.to_bytes())),
        ("bob_prekeys_state_before", prekeys_before),
        ("bob_prekeys_state_after", hex(&*bob_prekeys.to_bytes())),
        ("alice_session_state_pending", alice_pending_state),
        (
            "messages",
            Value::from(messages.iter().map(|(_, m)| hex(m)).collect::<Vec<_>>()),
        ),
        ("deliveries", Value::from(deliveries)),
        ("alice_session_state", hex(&*alice_session.to_bytes())),
        ("bob_session_state", hex(&*bob_session.to_bytes())),
    ]))
}

fn encrypt(from: &str, plaintext: &str) -> Value {
    object([
        ("op", Value::from("encrypt")),
        ("from", Value::from(from)),
        ("plaintext", hex(plaintext.as_bytes())),
    ])
}

fn deliver(message: usize) -> Value {
    object([
        ("op", Value::from("deliver")),
        ("message", Value::from(message)),
    ])
}

/// Two prekey messages (the second delivered first), a reply, then plain
/// ratchet messages both ways.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let steps = vec![
        encrypt("alice", "prekey message 0"),
        encrypt("alice", "prekey message 1"),
        deliver(1),
        deliver(0),
        encrypt("bob", "reply 2"),
        deliver(2),
        encrypt("alice", "ratchet message 3"),
        encrypt("alice", "ratchet message 4"),
        deliver(4),
        encrypt("bob", "reply 5"),
        deliver(5),
        deliver(3),
    ];
    let base = object([
        ("signed_prekey_id", Value::from(1)),
        ("one_time_prekey_id", Value::from(100)),
        ("kem_prekey_id", Value::from(7)),
        ("steps", Value::from(steps)),
    ]);
    // Learn each party's draws by running once with recording RNGs.
    let mut alice = RecordingRng::from_seed_byte(0x60);
    let mut bob = RecordingRng::from_seed_byte(0x61);
    run(&base, &mut alice, &mut bob)?;
    let (alice_draws, bob_draws) = (alice.take_draws(), bob.take_draws());
    let mut input = base;
    input["alice_draws"] = Value::from(alice_draws.iter().map(hex).collect::<Vec<_>>());
    input["bob_draws"] = Value::from(bob_draws.iter().map(hex).collect::<Vec<_>>());
    Ok(vec![Vector {
        name: "hybrid-with-one-time-prekey".into(),
        output: compute(&input)?,
        input,
    }])
}
