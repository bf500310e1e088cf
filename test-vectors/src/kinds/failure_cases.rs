//! The cases of kind `failure` (see `failure.rs`): real states and messages
//! from seeded RNGs, each then tampered with in one documented way.

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::labels::{ATTACHMENT_SEGMENT_LEN, KEM_PREKEY_CONTEXT, TAG_LEN};
use microbot_crypto::prekeys::{
    KemPreKey, LocalPreKeys, OneTimePreKey, PreKeyBundle, SignedPreKey,
};
use microbot_crypto::ratchet::RatchetSession;
use microbot_crypto::sender_key::{GroupId, InboundSenderKey, OutboundSenderKey, SenderKeyRecord};
use microbot_crypto::session::Session;
use serde_json::Value;
use x25519_dalek::{PublicKey, StaticSecret};

use super::failure::{compute, input, key_object};
use crate::hexbytes::hex;
use crate::replay_rng::RecordingRng;
use crate::vector::{Vector, VectorError};

fn failed(e: impl std::fmt::Display) -> VectorError {
    VectorError::Failed(e.to_string())
}

fn vector(name: &str, input: Value) -> Result<Vector, VectorError> {
    let output = compute(&input)?;
    if output.get("error").and_then(Value::as_str) == Some("") {
        return Err(failed(format!("failure vector {name} was accepted")));
    }
    Ok(Vector {
        name: name.into(),
        input,
        output,
    })
}

fn draws(rng: &mut RecordingRng) -> Value {
    Value::from(rng.take_draws().iter().map(hex).collect::<Vec<_>>())
}

/// Every failure case, in file order.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut vectors = ratchet_cases()?;
    vectors.extend(sender_key_cases()?);
    vectors.extend(attachment_cases()?);
    vectors.extend(bundle_cases()?);
    vectors.extend(prekey_message_cases()?);
    Ok(vectors)
}

fn ratchet_cases() -> Result<Vec<Vector>, VectorError> {
    let mut setup = RecordingRng::from_seed_byte(0x70);
    let secret = [0x71u8; 32];
    let ad = [0x72u8; 64];
    let bob_key = StaticSecret::random_from_rng(&mut setup);
    let mut alice =
        RatchetSession::new_initiator(&mut setup, &secret, &ad, &PublicKey::from(&bob_key))
            .map_err(failed)?;
    let mut bob = RatchetSession::new_responder(&secret, &ad, bob_key);
    let sent: Vec<Vec<u8>> = (0..1003)
        .map(|i| alice.encrypt(&mut setup, format!("message {i}").as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    bob.decrypt(&mut setup, &sent[0]).map_err(failed)?;
    let after_one = bob.to_bytes();
    let case = |state: &[u8], message: &[u8], draws: Value| {
        input(
            "ratchet_decrypt",
            [
                ("state", hex(state)),
                ("message", hex(message)),
                ("draws", draws),
            ],
        )
    };
    let none = || Value::from(Vec::<Value>::new());
    let mut tampered_header = sent[1].clone();
    tampered_header[1 + 32] ^= 0x01; // a bit of PN
    let mut other_version = sent[1].clone();
    other_version[0] = 0x02;
    let mut vectors = vec![
        vector(
            "ratchet-tampered-header",
            case(&after_one, &tampered_header, none()),
        )?,
        vector(
            "ratchet-version-byte",
            case(&after_one, &other_version, none()),
        )?,
        vector(
            "ratchet-truncated",
            case(&after_one, &sent[1][..56], none()),
        )?,
        // N = 1002 after Nr = 1: 1001 keys would be skipped, one too many.
        vector(
            "ratchet-too-far-ahead",
            case(&after_one, &sent[1002], none()),
        )?,
        vector("ratchet-replay", case(&after_one, &sent[0], none()))?,
    ];
    // A tampered reply on a new chain: Alice's DH step draws her next ratchet
    // key (32 bytes), then the AEAD refuses and the drawn key is discarded.
    setup.take_draws();
    let mut reply = bob.encrypt(&mut setup, b"reply").map_err(failed)?;
    let alice_state = alice.to_bytes();
    let last = reply.len() - 1;
    reply[last] ^= 0x80;
    let mut step_rng = RecordingRng::from_seed_byte(0x73);
    let _ = alice.decrypt(&mut step_rng, &reply);
    vectors.push(vector(
        "ratchet-tampered-new-chain",
        case(&alice_state, &reply, draws(&mut step_rng)),
    )?);
    Ok(vectors)
}

fn sender_key_cases() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x74);
    let group = GroupId::new(b"failure group").map_err(failed)?;
    let mut sender = OutboundSenderKey::create(&mut rng, group.clone());
    let mut record = SenderKeyRecord::new();
    record.add(InboundSenderKey::new(group, &sender.distribution()));
    let fresh = record.to_bytes();
    let sent: Vec<Vec<u8>> = (0..2002)
        .map(|i| sender.encrypt(format!("group {i}").as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    record.decrypt(&sent[0]).map_err(failed)?;
    let after_one = record.to_bytes();
    let case = |state: &[u8], message: &[u8]| {
        input(
            "sender_key_decrypt",
            [("state", hex(state)), ("message", hex(message))],
        )
    };
    let mut bad_signature = sent[1].clone();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0x01;
    Ok(vec![
        vector("sender-key-bad-signature", case(&after_one, &bad_signature))?,
        vector("sender-key-replay", case(&after_one, &sent[0]))?,
        // Iteration 2001 from a receiver expecting 0: a jump over 2000.
        vector("sender-key-too-far-ahead", case(&fresh, &sent[2001]))?,
    ])
}

fn attachment_cases() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x75);
    let mut key = [0u8; 32];
    rand_core::Rng::fill_bytes(&mut rng, &mut key);
    let sealed = ATTACHMENT_SEGMENT_LEN + TAG_LEN;
    let length = 2 * ATTACHMENT_SEGMENT_LEN + 100;
    let total = length + 3 * TAG_LEN;
    let case = |keep: usize| {
        input(
            "attachment_decrypt",
            [
                ("key", hex(key)),
                ("pattern", hex(b"microbot failure ")),
                ("length", Value::from(length)),
                ("keep", Value::from(keep)),
            ],
        )
    };
    Ok(vec![
        vector("attachment-cut-at-a-segment-boundary", case(2 * sealed))?,
        vector("attachment-piece-shorter-than-a-tag", case(sealed + 10))?,
        vector("attachment-cut-inside-the-final-segment", case(total - 1))?,
        vector("attachment-empty-stream", case(0))?,
    ])
}

fn bundle_cases() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x76);
    let bob = IdentityKeyPair::generate(&mut rng);
    let signed = SignedPreKey::generate(&mut rng, &bob, 1);
    let kem = KemPreKey::generate(&mut rng, &bob, 2);
    let identity = hex(bob.public().to_bytes());
    let signed_object = |signature: &[u8]| key_object(1, &signed.public().public_key, signature);
    let kem_public = &kem.public().public_key;
    let mut bad_signature = signed.public().signature;
    bad_signature[0] ^= 0x01;
    // A KEM key whose first coefficient is 0xFFF ≥ q, validly signed.
    let mut out_of_range = kem_public.clone();
    out_of_range[0] = 0xff;
    out_of_range[1] |= 0x0f;
    let message = [
        KEM_PREKEY_CONTEXT,
        &2u32.to_be_bytes(),
        out_of_range.as_slice(),
    ]
    .concat();
    let out_of_range_signature = bob.sign(&message);
    let good_kem = key_object(2, kem_public, &kem.public().signature);
    Ok(vec![
        vector(
            "bundle-bad-signed-prekey-signature",
            input(
                "prekey_bundle",
                [
                    ("identity_key", identity.clone()),
                    ("signed_prekey", signed_object(&bad_signature)),
                    ("kem_prekey", good_kem),
                ],
            ),
        )?,
        vector(
            "bundle-kem-prekey-stripped",
            input(
                "prekey_bundle",
                [
                    ("identity_key", identity.clone()),
                    ("signed_prekey", signed_object(&signed.public().signature)),
                ],
            ),
        )?,
        vector(
            "bundle-kem-key-fails-the-fips-203-check",
            input(
                "prekey_bundle",
                [
                    ("identity_key", identity),
                    ("signed_prekey", signed_object(&signed.public().signature)),
                    (
                        "kem_prekey",
                        key_object(2, &out_of_range, &out_of_range_signature),
                    ),
                ],
            ),
        )?,
    ])
}

fn prekey_message_cases() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x77);
    let bob = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPreKeys::new();
    let signed = SignedPreKey::generate(&mut rng, &bob, 1);
    let one_time = OneTimePreKey::generate(&mut rng, 5);
    let kem = KemPreKey::generate(&mut rng, &bob, 2);
    let bundle = PreKeyBundle {
        identity: *bob.public(),
        signed_prekey: signed.public().clone(),
        one_time_prekey: Some(*one_time.public()),
        kem_prekey: Some(kem.public().clone()),
    };
    prekeys.add_signed(signed);
    prekeys.add_one_time(one_time);
    prekeys.add_kem(kem);
    let alice = IdentityKeyPair::generate(&mut rng);
    let mut session = Session::initiate(&mut rng, &alice, &bundle).map_err(failed)?;
    let first = session.encrypt(&mut rng, b"first").map_err(failed)?;
    let before = prekeys.to_bytes();
    Session::accept(&mut rng, &bob, &mut prekeys, &first).map_err(failed)?;
    let case = |prekeys_state: &[u8], message: &[u8]| {
        input(
            "prekey_message",
            [
                ("identity_state", hex(&*bob.to_bytes())),
                ("prekeys_state", hex(prekeys_state)),
                ("message", hex(message)),
            ],
        )
    };
    Ok(vec![
        // The one-time prekey is gone: the same initial message again is a replay.
        vector(
            "prekey-message-replayed-after-its-one-time-prekey-was-used",
            case(&prekeys.to_bytes(), &first),
        )?,
        // The same message stripped of its KEM fields (§4.3 fields 6 and 7):
        // a classical handshake naming a signed prekey with kem_flag 0x01.
        vector(
            "prekey-message-classical-on-a-kem-advertising-prekey",
            case(&before, &strip_kem(&first)?),
        )?,
    ])
}

/// The PreKeyMessage of SPEC.md §4.3, to rewrite one in a failure case.
#[derive(Clone, PartialEq, prost::Message)]
struct PreKeyMessage {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    base_key: Vec<u8>,
    #[prost(uint32, tag = "4")]
    signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "5")]
    one_time_prekey_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    kem_prekey_id: Option<u32>,
    #[prost(bytes = "vec", tag = "7")]
    kem_ciphertext: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    message: Vec<u8>,
}

/// `message` (type 0x02) without its KEM prekey id and ciphertext.
fn strip_kem(message: &[u8]) -> Result<Vec<u8>, VectorError> {
    use prost::Message;
    let (&kind, body) = message.split_first().ok_or_else(|| failed("empty"))?;
    let mut decoded = PreKeyMessage::decode(body).map_err(failed)?;
    decoded.kem_prekey_id = None;
    decoded.kem_ciphertext.clear();
    let mut out = vec![kind];
    out.extend_from_slice(&decoded.encode_to_vec());
    Ok(out)
}
