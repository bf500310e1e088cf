//! 1:1 sessions (SPEC.md §4.3, §5): what an attacker on the wire can do to
//! Alice's messages before they reach Bob.

use microbot_crypto::Session;
use microbot_crypto::labels::MAX_SKIP_PER_CHAIN;
use microbot_crypto::ratchet::DecryptError;
use microbot_crypto::session::{MESSAGE_TYPE_RATCHET, SessionError};
use microbot_fuzz_targets::fixtures::{self, Sample};

/// Offsets in a session message of type 0x01: type, version, ratchet key
/// (32), PN (u32 BE), N (u32 BE).
const PN_AT: usize = 2 + 32;
const N_AT: usize = PN_AT + 4;

/// The pending messages that are plain ratchet messages (type 0x01).
fn ratchet_messages() -> Vec<&'static Sample> {
    fixtures::conversation()
        .pending
        .iter()
        .filter(|s| s.bytes.first() == Some(&MESSAGE_TYPE_RATCHET))
        .collect()
}

/// Decrypts and expects a refusal that leaves the session unchanged.
fn refused(session: &mut Session, message: &[u8]) -> SessionError {
    let before = session.to_bytes();
    let error = session
        .decrypt(&mut fixtures::rng(7), message)
        .expect_err("an altered message decrypted");
    assert!(
        *session.to_bytes() == *before,
        "refusal changed the session"
    );
    error
}

fn accepted(session: &mut Session, sample: &Sample) {
    let plaintext = session.decrypt(&mut fixtures::rng(8), &sample.bytes);
    assert_eq!(
        plaintext.as_deref(),
        Ok(sample.plaintext.as_slice()),
        "{}",
        sample.name
    );
}

#[test]
fn every_single_bit_flip_is_refused_and_the_original_still_decrypts() {
    let messages = ratchet_messages();
    assert_eq!(messages.len(), 3, "fixture changed: a4, a6, a7");
    for sample in messages {
        let mut session = fixtures::bob_session();
        for at in 0..sample.bytes.len() {
            for bit in [0, 7] {
                let mut tampered = sample.bytes.clone();
                tampered[at] ^= 1 << bit;
                refused(&mut session, &tampered);
            }
        }
        accepted(&mut session, sample);
    }
}

#[test]
fn the_inner_message_of_a_prekey_message_cannot_be_altered() {
    // a2 is a prekey message for Bob's existing session; its ratchet message
    // is the protobuf field `message` (tag 8), at the end of the encoding.
    let conversation = fixtures::conversation();
    let a2 = &conversation.pending[0];
    assert_eq!(a2.bytes[0], microbot_crypto::session::MESSAGE_TYPE_PREKEY);
    let mut session = fixtures::bob_session();
    let tail = 60; // well inside the 41 + 16 + plaintext bytes of the inner message
    for at in a2.bytes.len() - tail..a2.bytes.len() {
        let mut tampered = a2.bytes.clone();
        tampered[at] ^= 0x01;
        refused(&mut session, &tampered);
    }
    accepted(&mut session, a2);
}

#[test]
fn every_truncation_is_refused() {
    for sample in ratchet_messages() {
        let mut session = fixtures::bob_session();
        for len in 0..sample.bytes.len() {
            refused(&mut session, &sample.bytes[..len]);
        }
        let mut extended = sample.bytes.clone();
        extended.push(0);
        refused(&mut session, &extended);
        accepted(&mut session, sample);
    }
}

#[test]
fn a_replayed_message_is_refused_as_a_duplicate() {
    let conversation = fixtures::conversation();
    let mut session = fixtures::bob_session();
    for sample in &conversation.delivered {
        assert!(matches!(
            refused(&mut session, &sample.bytes),
            SessionError::Decrypt(DecryptError::Duplicate { .. })
        ));
    }
    for sample in &conversation.pending {
        accepted(&mut session, sample);
        let error = refused(&mut session, &sample.bytes);
        // a2 was the last skipped key of Alice's first chain: once it is
        // used, that chain is forgotten and a replay looks like a new ratchet
        // key whose DH step cannot reproduce the message key.
        let expected = if sample.name == "a2" {
            matches!(
                error,
                SessionError::Decrypt(DecryptError::AuthenticationFailed)
            )
        } else {
            matches!(error, SessionError::Decrypt(DecryptError::Duplicate { .. }))
        };
        assert!(expected, "{}: {error:?}", sample.name);
    }
}

/// Every permutation of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out
}

#[test]
fn pending_messages_decrypt_once_in_every_order() {
    let pending = &fixtures::conversation().pending;
    let orders = permutations(pending.len());
    assert_eq!(orders.len(), 24);
    for order in orders {
        let mut session = fixtures::bob_session();
        for &i in &order {
            accepted(&mut session, &pending[i]);
        }
        for sample in pending {
            refused(&mut session, &sample.bytes);
        }
    }
}

/// `sample` with the big-endian u32 at `at` replaced.
fn with_u32(sample: &Sample, at: usize, value: u32) -> Vec<u8> {
    let mut bytes = sample.bytes.clone();
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
    bytes
}

#[test]
fn a_message_claiming_a_huge_skip_is_refused_before_any_key_is_derived() {
    // a6 is the next message on Bob's current receiving chain (N = 2).
    let a6 = ratchet_messages()[1];
    assert_eq!(a6.name, "a6");
    let mut session = fixtures::bob_session();
    // The tag does not match these headers, so an error other than
    // AuthenticationFailed shows the message was refused before the AEAD,
    // i.e. before the message key would have been derived.
    assert!(matches!(
        refused(&mut session, &with_u32(a6, N_AT, u32::MAX)),
        SessionError::Decrypt(DecryptError::MessageNumberOutOfRange)
    ));
    for n in [2 + MAX_SKIP_PER_CHAIN + 1, 1 << 31, u32::MAX - 1] {
        assert!(
            matches!(
                refused(&mut session, &with_u32(a6, N_AT, n)),
                SessionError::Decrypt(DecryptError::TooFarAhead { .. })
            ),
            "N = {n}"
        );
    }
    // At the limit the keys are derived, the AEAD refuses, nothing is kept.
    assert!(matches!(
        refused(&mut session, &with_u32(a6, N_AT, 2 + MAX_SKIP_PER_CHAIN)),
        SessionError::Decrypt(DecryptError::AuthenticationFailed)
    ));
    // a7 starts a new chain: a huge PN would skip the rest of the old chain.
    let a7 = ratchet_messages()[2];
    assert_eq!(a7.name, "a7");
    for pn in [MAX_SKIP_PER_CHAIN + 3, u32::MAX] {
        assert!(
            matches!(
                refused(&mut session, &with_u32(a7, PN_AT, pn)),
                SessionError::Decrypt(DecryptError::TooFarAhead { .. })
            ),
            "PN = {pn}"
        );
    }
    accepted(&mut session, a6);
    accepted(&mut session, a7);
}

#[test]
fn a_message_under_a_forged_ratchet_key_is_refused() {
    let a7 = ratchet_messages()[2];
    let mut session = fixtures::bob_session();
    let mut forged = a7.bytes.clone();
    let attacker = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    forged[2..34].copy_from_slice(attacker.as_bytes());
    assert!(matches!(
        refused(&mut session, &forged),
        SessionError::Decrypt(DecryptError::AuthenticationFailed)
    ));
    // A low-order point is refused as a key, not used in a DH.
    forged[2..34].copy_from_slice(&[0u8; 32]);
    assert!(matches!(
        refused(&mut session, &forged),
        SessionError::Decrypt(DecryptError::InvalidRatchetKey(_))
    ));
    accepted(&mut session, a7);
}
