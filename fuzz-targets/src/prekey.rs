//! Prekey message targets (SPEC.md §4.3): `prekey_message` (arbitrary bytes
//! to `Session::peek` and `Session::accept` with Bob's real prekeys) and
//! `prekey_mutated` (real initial messages of every handshake variant,
//! mutated and delivered in sequence).
//!
//! Invariants: a refused message leaves the prekeys exactly as they were
//! (the one-time prekey count included); an accepted one decrypts to what
//! Alice sent, agrees with `peek`, consumes at most its one one-time prekey,
//! and a message whose one-time prekey was consumed is never accepted again.

use arbitrary::{Arbitrary, Unstructured};
use microbot_crypto::Session;
use microbot_crypto::prekeys::LocalPreKeys;
use microbot_crypto::session::MessageKind;

use crate::fixtures::{self, Sample};
use crate::mutate::{Mutation, apply_all, sequence};

/// What a successful `accept` produced.
struct Accepted {
    plaintext: Vec<u8>,
    one_time_used: bool,
}

/// `Session::accept` on `prekeys`, with every invariant that does not need
/// to know which message was sent.
fn accept_checked(prekeys: &mut LocalPreKeys, message: &[u8]) -> Option<Accepted> {
    let devices = fixtures::devices();
    let peeked = Session::peek(message);
    let before = prekeys.to_bytes();
    let count = prekeys.one_time_count();
    let mut rng = fixtures::rng(200);
    let (mut session, plaintext) = match Session::accept(&mut rng, &devices.bob, prekeys, message) {
        Ok(accepted) => accepted,
        Err(_) => {
            assert_eq!(prekeys.one_time_count(), count, "refusal used a prekey");
            assert!(
                *prekeys.to_bytes() == *before,
                "refusal changed the prekeys"
            );
            return None;
        }
    };
    let peeked_ok = matches!(
        peeked,
        Ok(MessageKind::PreKey { ref identity, ref base_key })
            if **identity == *session.remote_identity() && base_key == session.base_key()
    );
    assert!(peeked_ok, "peek disagrees with accept: {peeked:?}");
    assert!(session.remote_identity() == devices.alice.public());
    assert!(!session.awaiting_reply());
    let used = count - prekeys.one_time_count();
    assert!(used <= 1, "one message used {used} one-time prekeys");
    // The responder can answer at once.
    assert!(session.encrypt(&mut rng, b"reply").is_ok());
    Some(Accepted {
        plaintext,
        one_time_used: used == 1,
    })
}

/// Target `prekey_message`: arbitrary bytes as an initial message to Bob.
/// Only Alice's real initial messages can be accepted.
pub fn prekey_message(data: &[u8]) {
    let mut prekeys = fixtures::devices().bob_prekeys.clone();
    let Some(accepted) = accept_checked(&mut prekeys, data) else {
        return;
    };
    assert!(
        fixtures::initial_messages()
            .iter()
            .any(|s| s.plaintext == accepted.plaintext),
        "accepted a message Alice never sent"
    );
    if accepted.one_time_used {
        assert!(
            accept_checked(&mut prekeys, data).is_none(),
            "a message was accepted twice with the same one-time prekey"
        );
    }
}

/// One delivery of a mutated initial message.
#[derive(Debug, Arbitrary)]
struct Delivery {
    /// Which initial message (modulo the number of variants).
    index: u8,
    /// What the attacker does to it (often nothing).
    mutations: Vec<Mutation>,
}

/// Most deliveries one input makes.
const MAX_DELIVERIES: usize = 8;

/// Target `prekey_mutated`: Alice's initial messages (hybrid or classical,
/// with or without a one-time prekey), mutated, delivered in sequence to the
/// same prekeys. A genuine message is accepted unless its one-time prekey is
/// used up; an accepted message decrypts to its own plaintext.
pub fn prekey_mutated(data: &[u8]) {
    let samples: &[Sample] = fixtures::initial_messages();
    let mut consumed = vec![false; samples.len()];
    let mut prekeys = fixtures::devices().bob_prekeys.clone();
    for delivery in sequence::<Delivery>(Unstructured::new(data), MAX_DELIVERIES) {
        let index = usize::from(delivery.index) % samples.len();
        let Some(sample) = samples.get(index) else {
            return;
        };
        let bytes = apply_all(&sample.bytes, &delivery.mutations);
        let genuine = bytes == sample.bytes;
        let was_consumed = consumed.get(index).copied().unwrap_or(true);
        match accept_checked(&mut prekeys, &bytes) {
            Some(accepted) => {
                assert_eq!(accepted.plaintext, sample.plaintext, "wrong plaintext");
                if accepted.one_time_used {
                    assert!(!was_consumed, "one-time prekey of {} reused", sample.name);
                    if let Some(flag) = consumed.get_mut(index) {
                        *flag = true;
                    }
                }
            }
            None => assert!(
                !genuine || was_consumed,
                "genuine initial message {} refused",
                sample.name
            ),
        }
    }
}
