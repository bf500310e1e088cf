//! Sender keys (SPEC.md §6): tampered, replayed, reordered, truncated and
//! forged group messages, and a sender that claims a huge skip.

use microbot_crypto::labels::MAX_SENDER_KEY_SKIP;
use microbot_crypto::sender_key::{
    InboundSenderKey, OutboundSenderKey, SenderKeyError, SenderKeyRecord,
};
use microbot_fuzz_targets::fixtures::{self, Sample};
use prost::Message;
use zeroize::Zeroizing;

/// Decrypts and expects a refusal that leaves the key unchanged.
fn refused(key: &mut InboundSenderKey, message: &[u8]) -> SenderKeyError {
    let before = key.to_bytes();
    let error = key
        .decrypt(message)
        .expect_err("an altered group message decrypted");
    assert!(*key.to_bytes() == *before, "refusal changed the key");
    error
}

fn accepted(key: &mut InboundSenderKey, sample: &Sample) {
    assert_eq!(
        key.decrypt(&sample.bytes).as_deref(),
        Ok(sample.plaintext.as_slice())
    );
}

#[test]
fn every_single_bit_flip_is_refused_and_the_original_still_decrypts() {
    for sample in &fixtures::sender_keys().pending {
        let mut key = fixtures::inbound_sender_key();
        for at in 0..sample.bytes.len() {
            for bit in [0, 7] {
                let mut tampered = sample.bytes.clone();
                tampered[at] ^= 1 << bit;
                let error = refused(&mut key, &tampered);
                // Header bytes may fail their own checks first; everything
                // else is caught by the signature.
                if at >= 9 {
                    assert_eq!(error, SenderKeyError::BadSignature, "byte {at}");
                }
            }
        }
        accepted(&mut key, sample);
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for sample in &fixtures::sender_keys().pending {
        let mut key = fixtures::inbound_sender_key();
        for len in 0..sample.bytes.len() {
            refused(&mut key, &sample.bytes[..len]);
        }
        let mut extended = sample.bytes.clone();
        extended.push(0);
        refused(&mut key, &extended);
        accepted(&mut key, sample);
    }
}

#[test]
fn replays_are_refused_and_reordered_messages_decrypt_once() {
    let keys = fixtures::sender_keys();
    let mut key = fixtures::inbound_sender_key();
    for sample in &keys.delivered {
        assert!(matches!(
            refused(&mut key, &sample.bytes),
            SenderKeyError::DuplicateOrExpired { .. }
        ));
    }
    // Newest first: m7 skips m6, then the skipped keys serve m6, m4, m2.
    for sample in keys.pending.iter().rev() {
        accepted(&mut key, sample);
        assert!(matches!(
            refused(&mut key, &sample.bytes),
            SenderKeyError::DuplicateOrExpired { .. }
        ));
    }
    assert_eq!(key.skipped_len(), 0);
}

#[test]
fn the_record_routes_by_key_id_and_refuses_unknown_generations() {
    let keys = fixtures::sender_keys();
    let mut record = fixtures::sender_key_record();
    for sample in keys.second_generation.iter().chain(&keys.pending) {
        assert_eq!(
            record.decrypt(&sample.bytes).as_deref(),
            Ok(sample.plaintext.as_slice())
        );
    }
    let mut unknown = keys.pending[0].bytes.clone();
    unknown[1] ^= 0xff;
    let before = record.to_bytes();
    assert!(matches!(
        record.decrypt(&unknown),
        Err(SenderKeyError::UnknownKeyId { .. })
    ));
    assert!(*record.to_bytes() == *before);
    assert!(matches!(
        SenderKeyRecord::new().decrypt(&keys.pending[0].bytes),
        Err(SenderKeyError::UnknownKeyId { .. })
    ));
}

/// `OutboundSenderKeyState` as SPEC.md §6.7 defines it, to build the state
/// a malicious member could hold.
#[derive(Clone, PartialEq, prost::Message)]
struct OutboundSenderKeyState {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    group_id: Vec<u8>,
    #[prost(uint32, tag = "3")]
    key_id: u32,
    #[prost(uint32, tag = "4")]
    iteration: u32,
    #[prost(bytes = "vec", tag = "5")]
    chain_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    signing_seed: Vec<u8>,
}

/// Mallory, a member, received Alice's first distribution: she knows Alice's
/// key id and chain key (bytes 1..5 and 9..41 of its 73-byte encoding) and
/// has her own signing key. This is the sender key she can build to
/// impersonate Alice, advanced to `iteration`.
fn mallory_as_alice(iteration: u32) -> OutboundSenderKey {
    let distribution = &fixtures::sender_keys().distributions[0];
    let state = OutboundSenderKeyState {
        version: microbot_crypto::labels::STATE_VERSION,
        group_id: fixtures::GROUP_ID.to_vec(),
        key_id: u32::from_be_bytes(distribution[1..5].try_into().unwrap()),
        iteration: 0,
        chain_key: distribution[9..41].to_vec(),
        signing_seed: vec![0x4d; 32],
    };
    let mut key = OutboundSenderKey::from_bytes(&Zeroizing::new(state.encode_to_vec())).unwrap();
    while key.iteration() < iteration {
        key.encrypt(b"").unwrap();
    }
    key
}

#[test]
fn a_message_signed_by_another_member_is_refused() {
    let keys = fixtures::sender_keys();
    // m6 is pending at iteration 6; Mallory forges it and one at iteration 8.
    for iteration in [6, 8] {
        let mut mallory = mallory_as_alice(iteration);
        let forged = mallory.encrypt(b"transfer all the money").unwrap();
        // The forgery is a valid encryption under Alice's chain: a receiver
        // that trusted Mallory's signing key would decrypt it.
        let mut trusting = InboundSenderKey::new(
            fixtures::inbound_sender_key().group_id().clone(),
            &mallory_as_alice(iteration).distribution(),
        );
        assert_eq!(
            trusting.decrypt(&forged).as_deref(),
            Ok(&b"transfer all the money"[..])
        );
        // Bob holds Alice's signing key and refuses it.
        let mut key = fixtures::inbound_sender_key();
        assert_eq!(refused(&mut key, &forged), SenderKeyError::BadSignature);
        let mut record = fixtures::sender_key_record();
        let before = record.to_bytes();
        assert_eq!(record.decrypt(&forged), Err(SenderKeyError::BadSignature));
        assert!(*record.to_bytes() == *before);
        for sample in &keys.pending {
            accepted(&mut key, sample);
        }
    }
}

#[test]
fn a_message_claiming_a_huge_skip_is_refused() {
    let keys = fixtures::sender_keys();
    let mut key = fixtures::inbound_sender_key();
    let next = key.iteration();
    let mut alice = OutboundSenderKey::from_bytes(&keys.outbound).unwrap();
    let mut at_limit = Vec::new();
    let mut beyond = Vec::new();
    // Iteration next + MAX is the furthest a receiver at `next` accepts.
    while alice.iteration() <= next + MAX_SENDER_KEY_SKIP + 1 {
        let iteration = alice.iteration();
        let message = alice.encrypt(b"far").unwrap();
        if iteration == next + MAX_SENDER_KEY_SKIP {
            at_limit = message;
        } else if iteration == next + MAX_SENDER_KEY_SKIP + 1 {
            beyond = message;
        }
    }
    assert!(matches!(
        refused(&mut key, &beyond),
        SenderKeyError::TooFarAhead { .. }
    ));
    // The reserved iteration is refused by the parser, before the signature.
    let mut reserved = keys.pending[0].bytes.clone();
    reserved[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        refused(&mut key, &reserved),
        SenderKeyError::ReservedIteration
    );
    // One step less is allowed; the skipped-key store stays within its cap.
    assert_eq!(key.decrypt(&at_limit).as_deref(), Ok(&b"far"[..]));
    assert!(key.skipped_len() <= microbot_crypto::labels::MAX_SENDER_KEY_SKIPPED);
}
