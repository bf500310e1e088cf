//! Sender Keys through the public API (SPEC.md §6).

use microbot_crypto::kdf::{aead_open, hkdf_sha256, hmac_sha256};
use microbot_crypto::labels::{
    MAX_SENDER_KEY_GENERATIONS, MAX_SENDER_KEY_SKIP, MAX_SENDER_KEY_SKIPPED,
    SENDER_KEY_MESSAGE_INFO, STATE_VERSION,
};
use microbot_crypto::sender_key::{
    ChainExhausted, DistributionError, GroupId, InboundSenderKey, OutboundSenderKey,
    SenderKeyDistribution, SenderKeyError, SenderKeyMessage, SenderKeyRecord, StateError,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

fn group() -> GroupId {
    GroupId::new(b"group-1").unwrap()
}

/// A sender and one receiver that has its distribution.
fn pair(seed: u8) -> (OutboundSenderKey, InboundSenderKey) {
    let sender = OutboundSenderKey::create(&mut rng(seed), group());
    let wire = sender.distribution().to_bytes();
    let distribution = SenderKeyDistribution::from_bytes(&wire).unwrap();
    let receiver = InboundSenderKey::new(group(), &distribution);
    (sender, receiver)
}

/// Decrypting must fail with `expected` and leave the receiver byte-identical.
fn assert_refused(receiver: &mut InboundSenderKey, message: &[u8], expected: SenderKeyError) {
    let before = receiver.to_bytes();
    assert_eq!(receiver.decrypt(message), Err(expected));
    assert_eq!(
        receiver.to_bytes(),
        before,
        "state changed after {expected:?}"
    );
}

#[test]
fn round_trip_in_order() {
    let (mut sender, mut receiver) = pair(1);
    for i in 0..20u32 {
        let text = format!("message {i}");
        let wire = sender.encrypt(text.as_bytes()).unwrap();
        let parsed = SenderKeyMessage::parse(&wire).unwrap();
        assert_eq!(parsed.iteration(), i);
        assert_eq!(parsed.key_id(), sender.key_id());
        assert_eq!(receiver.decrypt(&wire).unwrap(), text.as_bytes());
    }
    assert_eq!(receiver.iteration(), 20);
    assert_eq!(receiver.skipped_len(), 0);
}

#[test]
fn empty_plaintext_and_wire_layout() {
    let (mut sender, mut receiver) = pair(2);
    let wire = sender.encrypt(b"").unwrap();
    // version ‖ key id ‖ iteration ‖ tag ‖ signature
    assert_eq!(wire.len(), 1 + 4 + 4 + 16 + 64);
    assert_eq!(wire[0], 0x01);
    assert_eq!(wire[1..5], sender.key_id().to_be_bytes());
    assert_eq!(wire[5..9], 0u32.to_be_bytes());
    assert_eq!(receiver.decrypt(&wire).unwrap(), b"");
}

#[test]
fn trace_matches_the_specified_derivation() {
    let (mut sender, mut receiver) = pair(3);
    let chain_key_0 = sender.distribution().to_bytes()[9..41].to_vec();
    let trace = sender.encrypt_traced(b"hello group").unwrap();
    assert_eq!(trace.chain_key.as_slice(), chain_key_0.as_slice());
    assert_eq!(*hmac_sha256(&trace.chain_key, &[0x01]), trace.message_key);
    let okm = hkdf_sha256::<44>(&[], &trace.message_key, SENDER_KEY_MESSAGE_INFO);
    assert_eq!(okm[..32], trace.aead_key);
    assert_eq!(okm[32..], trace.nonce);
    let mut ad = vec![7u8];
    ad.extend_from_slice(b"group-1");
    ad.extend_from_slice(&trace.message[..9]);
    assert_eq!(trace.associated_data, ad);
    let opened = aead_open(&trace.aead_key, &trace.nonce, &ad, &trace.ciphertext).unwrap();
    assert_eq!(opened, b"hello group");
    assert_eq!(
        trace.message[9..trace.message.len() - 64],
        trace.ciphertext[..]
    );
    assert_eq!(trace.message[trace.message.len() - 64..], trace.signature);
    // The next chain key is HMAC(ck, 0x02): a fresh distribution shows it.
    let next = sender.distribution().to_bytes();
    assert_eq!(next[9..41], *hmac_sha256(&trace.chain_key, &[0x02]));
    assert_eq!(receiver.decrypt(&trace.message).unwrap(), b"hello group");
}

#[test]
fn encryption_is_deterministic_given_state() {
    let (mut a, _) = pair(4);
    let (mut b, _) = pair(4);
    assert_eq!(a.encrypt(b"same").unwrap(), b.encrypt(b"same").unwrap());
    let restored = OutboundSenderKey::from_bytes(&a.to_bytes()).unwrap();
    let mut restored = restored;
    assert_eq!(a.encrypt(b"x").unwrap(), restored.encrypt(b"x").unwrap());
}

#[test]
fn out_of_order_within_window_and_duplicates_refused() {
    let (mut sender, mut receiver) = pair(5);
    let messages: Vec<Vec<u8>> = (0..6u8).map(|i| sender.encrypt(&[i]).unwrap()).collect();
    assert_eq!(receiver.decrypt(&messages[4]).unwrap(), [4]);
    assert_eq!(receiver.skipped_len(), 4);
    assert_eq!(receiver.decrypt(&messages[1]).unwrap(), [1]);
    assert_eq!(receiver.decrypt(&messages[0]).unwrap(), [0]);
    assert_eq!(receiver.skipped_len(), 2);
    assert_refused(
        &mut receiver,
        &messages[4],
        SenderKeyError::DuplicateOrExpired { iteration: 4 },
    );
    assert_refused(
        &mut receiver,
        &messages[1],
        SenderKeyError::DuplicateOrExpired { iteration: 1 },
    );
    assert_eq!(receiver.decrypt(&messages[5]).unwrap(), [5]);
    assert_eq!(receiver.decrypt(&messages[3]).unwrap(), [3]);
    assert_eq!(receiver.decrypt(&messages[2]).unwrap(), [2]);
    assert_eq!(receiver.skipped_len(), 0);
}

#[test]
fn jump_limit_is_enforced() {
    let (mut sender, mut receiver) = pair(6);
    let mut far = Vec::new();
    for _ in 0..=MAX_SENDER_KEY_SKIP + 1 {
        far = sender.encrypt(b"x").unwrap();
    }
    // iteration MAX_SENDER_KEY_SKIP + 1 would skip MAX + 1 keys.
    assert_refused(
        &mut receiver,
        &far,
        SenderKeyError::TooFarAhead {
            iteration: MAX_SENDER_KEY_SKIP + 1,
            current: 0,
        },
    );
    let (mut sender, mut receiver) = pair(6);
    let mut edge = Vec::new();
    for _ in 0..=MAX_SENDER_KEY_SKIP {
        edge = sender.encrypt(b"edge").unwrap();
    }
    assert_eq!(receiver.decrypt(&edge).unwrap(), b"edge");
    assert_eq!(receiver.skipped_len(), MAX_SENDER_KEY_SKIP as usize);
}

#[test]
fn stored_skipped_keys_are_bounded_oldest_dropped() {
    let (mut sender, mut receiver) = pair(7);
    let max = MAX_SENDER_KEY_SKIP as usize;
    let messages: Vec<Vec<u8>> = (0..=2 * max)
        .map(|_| sender.encrypt(b"x").unwrap())
        .collect();
    // Two maximal jumps skip 0..max and max+1..2*max: more keys than may be stored.
    receiver.decrypt(&messages[max]).unwrap();
    receiver.decrypt(&messages[2 * max]).unwrap();
    assert_eq!(receiver.skipped_len(), MAX_SENDER_KEY_SKIPPED);
    // The newest MAX_SENDER_KEY_SKIPPED skipped keys survive, oldest first out.
    let oldest_kept = 2 * max - 1 - MAX_SENDER_KEY_SKIPPED;
    assert_refused(
        &mut receiver,
        &messages[0],
        SenderKeyError::DuplicateOrExpired { iteration: 0 },
    );
    assert_refused(
        &mut receiver,
        &messages[oldest_kept - 1],
        SenderKeyError::DuplicateOrExpired {
            iteration: (oldest_kept - 1) as u32,
        },
    );
    assert_eq!(receiver.decrypt(&messages[oldest_kept]).unwrap(), b"x");
    assert_eq!(receiver.decrypt(&messages[2 * max - 1]).unwrap(), b"x");
}

#[test]
fn tampering_is_refused_before_touching_the_chain() {
    let (mut sender, mut receiver) = pair(8);
    let wire = sender.encrypt(b"attack at dawn").unwrap();
    for index in 0..wire.len() {
        let mut tampered = wire.clone();
        tampered[index] ^= 0x01;
        let before = receiver.to_bytes();
        assert!(
            receiver.decrypt(&tampered).is_err(),
            "flip at byte {index} accepted"
        );
        assert_eq!(receiver.to_bytes(), before);
    }
    assert_refused(
        &mut receiver,
        &wire[..wire.len() - 1],
        SenderKeyError::BadSignature,
    );
    assert_refused(
        &mut receiver,
        &wire[..88],
        SenderKeyError::TooShort { len: 88, min: 89 },
    );
    assert_eq!(receiver.decrypt(&wire).unwrap(), b"attack at dawn");
}

#[test]
fn message_re_signed_by_another_member_is_refused() {
    let (mut sender, mut receiver) = pair(9);
    // Mallory, another member, learned Alice's chain from her distribution
    // but cannot sign as Alice: her forgery uses her own signing key.
    let (mallory_source, _) = pair(10);
    let alice_distribution = sender.distribution();
    let mut forged_state = mallory_source.to_bytes().to_vec();
    // Rebuild Mallory's key with Alice's key id, chain and iteration, keeping Mallory's signing key.
    let alice_wire = alice_distribution.to_bytes();
    forged_state = replace_outbound_fields(&forged_state, &alice_wire);
    let mut mallory = OutboundSenderKey::from_bytes(&forged_state).unwrap();
    assert_eq!(mallory.key_id(), sender.key_id());
    let forged = mallory.encrypt(b"transfer the funds").unwrap();
    assert_refused(&mut receiver, &forged, SenderKeyError::BadSignature);
    // Alice's genuine message at the same iteration is still accepted.
    let genuine = sender.encrypt(b"hello").unwrap();
    assert_eq!(receiver.decrypt(&genuine).unwrap(), b"hello");
}

/// Builds an OutboundSenderKeyState (SPEC.md §6.7) by hand: Mallory's signing
/// seed from `mallory_state`, key id / iteration / chain key from a distribution.
fn replace_outbound_fields(mallory_state: &[u8], distribution: &[u8]) -> Vec<u8> {
    // Field 6 (signing_seed) is the last 34 bytes: tag 0x32, length 0x20, 32 bytes.
    let seed = &mallory_state[mallory_state.len() - 32..];
    assert_eq!(mallory_state[mallory_state.len() - 34..][..2], [0x32, 0x20]);
    let key_id = u32::from_be_bytes(distribution[1..5].try_into().unwrap());
    let iteration = u32::from_be_bytes(distribution[5..9].try_into().unwrap());
    let mut out = vec![0x08, STATE_VERSION as u8, 0x12, 7];
    out.extend_from_slice(b"group-1");
    out.push(0x18);
    varint(&mut out, u64::from(key_id));
    if iteration != 0 {
        out.push(0x20);
        varint(&mut out, u64::from(iteration));
    }
    out.extend_from_slice(&[0x2a, 0x20]);
    out.extend_from_slice(&distribution[9..41]);
    out.extend_from_slice(&[0x32, 0x20]);
    out.extend_from_slice(seed);
    out
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[test]
fn wrong_group_wrong_key_id_and_wrong_version_are_refused() {
    let (mut sender, receiver) = pair(11);
    let wire = sender.encrypt(b"hi").unwrap();
    // Same distribution, bound to another group: the AD differs.
    let mut other_group = InboundSenderKey::new(
        GroupId::new(b"group-2").unwrap(),
        &sender_distribution_at_zero(11),
    );
    assert_refused(&mut other_group, &wire, SenderKeyError::DecryptionFailed);
    // A message of another generation.
    let (mut stranger, _) = pair(12);
    let other = stranger.encrypt(b"hi").unwrap();
    let mut receiver = receiver;
    assert_refused(
        &mut receiver,
        &other,
        SenderKeyError::UnknownKeyId {
            key_id: stranger.key_id(),
        },
    );
    let mut bad_version = wire.clone();
    bad_version[0] = 0x02;
    assert_refused(
        &mut receiver,
        &bad_version,
        SenderKeyError::UnsupportedVersion(0x02),
    );
    let mut reserved = wire.clone();
    reserved[5..9].copy_from_slice(&[0xff; 4]);
    assert_refused(&mut receiver, &reserved, SenderKeyError::ReservedIteration);
}

fn sender_distribution_at_zero(seed: u8) -> SenderKeyDistribution {
    OutboundSenderKey::create(&mut rng(seed), group()).distribution()
}

#[test]
fn rotation_locks_out_a_removed_member() {
    let mut sender = OutboundSenderKey::create(&mut rng(13), group());
    let old_distribution = sender.distribution();
    let mut removed = InboundSenderKey::new(group(), &old_distribution);
    let mut remaining = SenderKeyRecord::new();
    assert!(remaining.add(InboundSenderKey::new(group(), &old_distribution)));
    let before_rotation = sender.encrypt(b"before").unwrap();

    let mut rotated = sender.rotate(&mut rng(14));
    assert_ne!(rotated.key_id(), sender.key_id());
    assert_ne!(
        rotated.distribution().signing_key(),
        old_distribution.signing_key()
    );
    assert_eq!(rotated.iteration(), 0);
    assert!(remaining.add(InboundSenderKey::new(group(), &rotated.distribution())));
    let after = rotated.encrypt(b"after rotation").unwrap();

    assert_eq!(
        removed.decrypt(&after),
        Err(SenderKeyError::UnknownKeyId {
            key_id: rotated.key_id()
        })
    );
    // Even relabelled with the old key id, the new message neither verifies
    // nor decrypts under the old generation.
    let mut relabelled = after.clone();
    relabelled[1..5].copy_from_slice(&sender.key_id().to_be_bytes());
    assert_refused(&mut removed, &relabelled, SenderKeyError::BadSignature);

    assert_eq!(remaining.decrypt(&after).unwrap(), b"after rotation");
    assert_eq!(remaining.decrypt(&before_rotation).unwrap(), b"before");
    assert_eq!(removed.decrypt(&before_rotation).unwrap(), b"before");
}

#[test]
fn record_keeps_bounded_generations_and_ignores_replayed_distributions() {
    let mut sender = OutboundSenderKey::create(&mut rng(15), group());
    let mut record = SenderKeyRecord::new();
    let first = sender.distribution();
    assert!(record.add(InboundSenderKey::new(group(), &first)));
    let wire = sender.encrypt(b"one").unwrap();
    assert_eq!(record.decrypt(&wire).unwrap(), b"one");
    // Re-processing the same distribution must not rewind the chain.
    assert!(!record.add(InboundSenderKey::new(group(), &first)));
    assert_eq!(
        record.decrypt(&wire),
        Err(SenderKeyError::DuplicateOrExpired { iteration: 0 })
    );
    let first_id = sender.key_id();
    for i in 0..MAX_SENDER_KEY_GENERATIONS {
        sender = sender.rotate(&mut rng(16 + i as u8));
        assert!(record.add(InboundSenderKey::new(group(), &sender.distribution())));
    }
    assert_eq!(record.len(), MAX_SENDER_KEY_GENERATIONS);
    assert!(record.generation(first_id).is_none());
    let restored = SenderKeyRecord::from_bytes(&record.to_bytes()).unwrap();
    assert_eq!(restored.to_bytes(), record.to_bytes());
    let mut restored = restored;
    let latest = sender.encrypt(b"latest").unwrap();
    assert_eq!(restored.decrypt(&latest).unwrap(), b"latest");
}

#[test]
fn state_round_trips_and_failed_decrypt_changes_nothing() {
    let (mut sender, mut receiver) = pair(20);
    let messages: Vec<Vec<u8>> = (0..4u8).map(|i| sender.encrypt(&[i]).unwrap()).collect();
    receiver.decrypt(&messages[3]).unwrap();
    let saved = receiver.to_bytes();
    let mut restored = InboundSenderKey::from_bytes(&saved).unwrap();
    assert_eq!(restored.to_bytes(), saved);
    assert_eq!(restored.skipped_len(), 3);
    assert_eq!(restored.decrypt(&messages[1]).unwrap(), [1]);

    let outbound = OutboundSenderKey::from_bytes(&sender.to_bytes()).unwrap();
    assert_eq!(outbound.to_bytes(), sender.to_bytes());
    assert_eq!(outbound.iteration(), 4);
}

#[test]
fn bad_state_bytes_are_typed_errors() {
    let (sender, receiver) = pair(21);
    assert!(matches!(
        InboundSenderKey::from_bytes(&[0xff, 0xff, 0xff]),
        Err(StateError::Decode(_))
    ));
    // Version field set to 2.
    let mut wrong_version = receiver.to_bytes().to_vec();
    assert_eq!(wrong_version[..2], [0x08, 0x01]);
    wrong_version[1] = 0x02;
    assert_eq!(
        InboundSenderKey::from_bytes(&wrong_version).unwrap_err(),
        StateError::UnsupportedVersion {
            found: 2,
            expected: STATE_VERSION
        }
    );
    // Missing everything but the version.
    assert_eq!(
        OutboundSenderKey::from_bytes(&[0x08, 0x01]).unwrap_err(),
        StateError::InvalidField("group_id")
    );
    let mut truncated = sender.to_bytes().to_vec();
    truncated.truncate(truncated.len() - 1);
    assert!(OutboundSenderKey::from_bytes(&truncated).is_err());
    assert!(SenderKeyRecord::from_bytes(&[0x08, 0x05]).is_err());
}

#[test]
fn distribution_encoding_is_fixed_and_validated() {
    let sender = OutboundSenderKey::create(&mut rng(22), group());
    let distribution = sender.distribution();
    let wire = distribution.to_bytes();
    assert_eq!(wire.len(), 73);
    assert_eq!(wire[0], 0x01);
    assert_eq!(wire[1..5], sender.key_id().to_be_bytes());
    assert_eq!(wire[5..9], [0, 0, 0, 0]);
    assert_eq!(wire[41..], distribution.signing_key());
    let parsed = SenderKeyDistribution::from_bytes(&wire).unwrap();
    assert_eq!(parsed.to_bytes(), wire);
    assert_eq!(
        SenderKeyDistribution::from_bytes(&wire[..72]).unwrap_err(),
        DistributionError::InvalidLength {
            expected: 73,
            actual: 72
        }
    );
    let mut bad = wire.to_vec();
    bad[0] = 9;
    assert_eq!(
        SenderKeyDistribution::from_bytes(&bad).unwrap_err(),
        DistributionError::UnsupportedVersion(9)
    );
    let mut weak = wire.to_vec();
    weak[41..].copy_from_slice(&[0; 32]);
    weak[41] = 1; // the identity point: small order
    assert_eq!(
        SenderKeyDistribution::from_bytes(&weak).unwrap_err(),
        DistributionError::InvalidSigningKey
    );
    let mut reserved = wire.to_vec();
    reserved[5..9].copy_from_slice(&[0xff; 4]);
    assert_eq!(
        SenderKeyDistribution::from_bytes(&reserved).unwrap_err(),
        DistributionError::ReservedIteration
    );
}

#[test]
fn late_joiner_reads_from_the_distributed_iteration_on() {
    let mut sender = OutboundSenderKey::create(&mut rng(23), group());
    let early = sender.encrypt(b"early").unwrap();
    let mut late = InboundSenderKey::new(group(), &sender.distribution());
    let later = sender.encrypt(b"later").unwrap();
    assert_refused(
        &mut late,
        &early,
        SenderKeyError::DuplicateOrExpired { iteration: 0 },
    );
    assert_eq!(late.decrypt(&later).unwrap(), b"later");
}

#[test]
fn chain_exhaustion_is_an_error_not_a_panic() {
    let sender = OutboundSenderKey::create(&mut rng(24), group());
    let mut state = sender.to_bytes().to_vec();
    // Insert iteration = u32::MAX (field 4, varint ff ff ff ff 0f) after key id.
    let key_id_end = 4 + 7 + 1 + varint_len(u64::from(sender.key_id()));
    let mut tail = state.split_off(key_id_end);
    state.extend_from_slice(&[0x20, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    state.append(&mut tail);
    let mut exhausted = OutboundSenderKey::from_bytes(&state).unwrap();
    assert_eq!(exhausted.iteration(), u32::MAX);
    assert_eq!(exhausted.encrypt(b"x"), Err(ChainExhausted));
}

fn varint_len(value: u64) -> usize {
    let mut out = Vec::new();
    varint(&mut out, value);
    out.len()
}

#[test]
fn group_id_limits_and_debug_hides_secrets() {
    assert!(GroupId::new(b"").is_err());
    assert!(GroupId::new(&[1; 256]).is_err());
    assert!(GroupId::new(&[1; 255]).is_ok());
    let (sender, receiver) = pair(25);
    let distribution = sender.distribution();
    let chain_hex: String = distribution.to_bytes()[9..41]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for debug in [
        format!("{sender:?}"),
        format!("{receiver:?}"),
        format!("{distribution:?}"),
    ] {
        assert!(!debug.contains(&chain_hex[..8]), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }
}

/// SPEC.md §6.6 step 4: a message whose signature verifies but whose AEAD
/// does not open under the stored skipped key is `DecryptionFailed`; the key
/// stays stored, so the genuine message still decrypts afterwards.
#[test]
fn stored_skipped_key_that_does_not_open_is_decryption_failed() {
    let (mut sender, mut receiver) = pair(40);
    let first = sender.encrypt(b"iteration 0").unwrap();
    let second = sender.encrypt(b"iteration 1").unwrap();
    assert_eq!(receiver.decrypt(&second).unwrap(), b"iteration 1");
    assert_eq!(receiver.skipped_len(), 1);

    // The same chain and signing key bound to another group (same-length id):
    // its iteration 0 is signed correctly but sealed with another AD.
    let (fresh, _) = pair(40);
    let state = fresh.to_bytes();
    let position = state
        .windows(7)
        .position(|w| w == b"group-1")
        .expect("group id in state");
    let mut other = state.to_vec();
    other[position..position + 7].copy_from_slice(b"group-2");
    let mut other_group = OutboundSenderKey::from_bytes(&other).unwrap();
    let forged = other_group.encrypt(b"other group").unwrap();
    assert_eq!(SenderKeyMessage::parse(&forged).unwrap().iteration(), 0);
    assert_refused(&mut receiver, &forged, SenderKeyError::DecryptionFailed);
    assert_eq!(receiver.skipped_len(), 1);
    assert_eq!(receiver.decrypt(&first).unwrap(), b"iteration 0");
}
