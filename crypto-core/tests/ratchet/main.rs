//! Double Ratchet behaviour through the public API (SPEC.md §5): conversations,
//! out-of-order delivery, skip bounds, the total cap and failure atomicity
//! here; persistence in `persistence.rs`; the traced values against the
//! spec's formulas in `trace.rs`.

mod persistence;
mod trace;

use microbot_crypto::KeyError;
use microbot_crypto::labels::{MAX_SKIP_PER_CHAIN, MAX_SKIPPED_KEYS_TOTAL};
use microbot_crypto::ratchet::{
    DecryptError, EncryptError, RATCHET_MESSAGE_MIN_LEN, RatchetHeader, RatchetMessage,
    RatchetSession,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use x25519_dalek::{PublicKey, StaticSecret};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

struct Pair {
    alice: RatchetSession,
    bob: RatchetSession,
    shared_secret: [u8; 32],
    bob_prekey: StaticSecret,
}

fn pair_with_ad(rng: &mut ChaCha20Rng, ad: &[u8]) -> Pair {
    let mut shared_secret = [0u8; 32];
    rng.fill_bytes(&mut shared_secret);
    let bob_prekey = StaticSecret::random_from_rng(rng);
    let alice =
        RatchetSession::new_initiator(rng, &shared_secret, ad, &PublicKey::from(&bob_prekey))
            .unwrap();
    let bob = RatchetSession::new_responder(&shared_secret, ad, bob_prekey.clone());
    Pair {
        alice,
        bob,
        shared_secret,
        bob_prekey,
    }
}

fn pair(rng: &mut ChaCha20Rng) -> Pair {
    let mut ad = [0u8; 64];
    rng.fill_bytes(&mut ad);
    pair_with_ad(rng, &ad)
}

fn header_of(message: &[u8]) -> RatchetHeader {
    RatchetMessage::parse(message).unwrap().header
}

/// Asserts that `message` is refused with `expected` and leaves `session` unchanged.
fn refused(
    session: &mut RatchetSession,
    rng: &mut ChaCha20Rng,
    message: &[u8],
    expected: DecryptError,
) {
    let before = session.to_bytes();
    assert_eq!(session.decrypt(rng, message), Err(expected));
    assert_eq!(
        session.to_bytes(),
        before,
        "state changed after {expected:?}"
    );
}

/// Asserts that `message` is refused (any error) and leaves `session` unchanged.
fn refused_any(session: &mut RatchetSession, rng: &mut ChaCha20Rng, message: &[u8]) {
    let before = session.to_bytes();
    assert!(session.decrypt(rng, message).is_err());
    assert_eq!(session.to_bytes(), before);
}

#[test]
fn conversation_in_both_directions_with_many_dh_steps() {
    let mut rng = rng(1);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let mut alice_keys = Vec::new();
    let mut bob_keys = Vec::new();
    for round in 0..12u32 {
        let burst = 1 + round % 4;
        for i in 0..burst {
            let text = format!("alice {round}.{i}");
            let message = alice.encrypt(&mut rng, text.as_bytes()).unwrap();
            let header = header_of(&message);
            assert_eq!(header.message_number, i);
            alice_keys.push(header.ratchet_key);
            assert_eq!(bob.decrypt(&mut rng, &message).unwrap(), text.as_bytes());
        }
        for i in 0..(1 + round % 3) {
            let text = format!("bob {round}.{i}");
            let message = bob.encrypt(&mut rng, text.as_bytes()).unwrap();
            let header = header_of(&message);
            assert_eq!(header.message_number, i);
            if round > 0 {
                assert_eq!(header.previous_chain_length, 1 + (round - 1) % 3);
            }
            bob_keys.push(header.ratchet_key);
            assert_eq!(alice.decrypt(&mut rng, &message).unwrap(), text.as_bytes());
        }
    }
    alice_keys.dedup();
    bob_keys.dedup();
    // Every turn of the conversation is a new DH ratchet step on each side.
    assert_eq!(alice_keys.len(), 12);
    assert_eq!(bob_keys.len(), 12);
    assert_eq!(alice.skipped_key_count(), 0);
    assert_eq!(bob.skipped_key_count(), 0);
}

#[test]
fn responder_cannot_send_before_receiving() {
    let mut rng = rng(2);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let before = bob.to_bytes();
    assert_eq!(
        bob.encrypt(&mut rng, b"too early"),
        Err(EncryptError::NoSendingChain)
    );
    assert_eq!(bob.to_bytes(), before);
    let first = alice.encrypt(&mut rng, b"hi").unwrap();
    bob.decrypt(&mut rng, &first).unwrap();
    let reply = bob.encrypt(&mut rng, b"hello").unwrap();
    assert_eq!(alice.decrypt(&mut rng, &reply).unwrap(), b"hello");
}

#[test]
fn out_of_order_within_one_chain() {
    let mut rng = rng(3);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let messages: Vec<Vec<u8>> = (0..20u8)
        .map(|i| alice.encrypt(&mut rng, &[i; 3]).unwrap())
        .collect();
    let order = [
        19, 3, 0, 18, 1, 2, 10, 4, 5, 17, 6, 7, 8, 9, 16, 11, 12, 15, 13, 14,
    ];
    for (delivered, &i) in order.iter().enumerate() {
        assert_eq!(
            bob.decrypt(&mut rng, &messages[i]).unwrap(),
            vec![i as u8; 3]
        );
        if delivered == 0 {
            assert_eq!(bob.skipped_key_count(), 19);
        }
    }
    assert_eq!(bob.skipped_key_count(), 0);
}

#[test]
fn out_of_order_across_dh_steps() {
    let mut rng = rng(4);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let a0 = alice.encrypt(&mut rng, b"a0").unwrap();
    let a1 = alice.encrypt(&mut rng, b"a1").unwrap();
    let a2 = alice.encrypt(&mut rng, b"a2").unwrap();
    bob.decrypt(&mut rng, &a0).unwrap();
    let b0 = bob.encrypt(&mut rng, b"b0").unwrap();
    let b1 = bob.encrypt(&mut rng, b"b1").unwrap();
    alice.decrypt(&mut rng, &b1).unwrap();
    let a3 = alice.encrypt(&mut rng, b"a3").unwrap();
    assert_eq!(header_of(&a3).previous_chain_length, 3);
    // a3 arrives first: Bob stores a1 and a2 (up to PN) then steps.
    assert_eq!(bob.decrypt(&mut rng, &a3).unwrap(), b"a3");
    assert_eq!(bob.skipped_key_count(), 2);
    let b2 = bob.encrypt(&mut rng, b"b2").unwrap();
    assert_eq!(header_of(&b2).previous_chain_length, 2);
    assert_eq!(alice.decrypt(&mut rng, &b2).unwrap(), b"b2");
    assert_eq!(alice.decrypt(&mut rng, &b0).unwrap(), b"b0");
    assert_eq!(bob.decrypt(&mut rng, &a2).unwrap(), b"a2");
    assert_eq!(bob.decrypt(&mut rng, &a1).unwrap(), b"a1");
    assert_eq!(alice.skipped_key_count(), 0);
    assert_eq!(bob.skipped_key_count(), 0);
}

#[test]
fn skip_beyond_the_bound_is_refused_without_touching_state_or_rng() {
    let mut rng = rng(5);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let bound = MAX_SKIP_PER_CHAIN as usize;
    let messages: Vec<Vec<u8>> = (0..bound + 2)
        .map(|_| alice.encrypt(&mut rng, b"x").unwrap())
        .collect();

    // N = bound + 1 as the first message of a new chain: bound + 1 skips.
    let rng_before = rng.clone();
    refused(
        &mut bob,
        &mut rng,
        &messages[bound + 1],
        DecryptError::TooFarAhead {
            skip: u64::from(MAX_SKIP_PER_CHAIN) + 1,
            max: MAX_SKIP_PER_CHAIN,
        },
    );
    // Refused before the DH step: no ratchet key pair was drawn.
    assert_eq!(rng.clone().next_u64(), rng_before.clone().next_u64());

    // Exactly `bound` skips is allowed.
    assert_eq!(bob.decrypt(&mut rng, &messages[bound]).unwrap(), b"x");
    assert_eq!(bob.skipped_key_count(), bound);
    assert_eq!(bob.decrypt(&mut rng, &messages[bound + 1]).unwrap(), b"x");
    assert_eq!(bob.decrypt(&mut rng, &messages[0]).unwrap(), b"x");

    // Within the same chain: Nr is now bound + 2; bound + 1 further skips are refused.
    let more: Vec<Vec<u8>> = (0..bound + 2)
        .map(|_| alice.encrypt(&mut rng, b"y").unwrap())
        .collect();
    refused(
        &mut bob,
        &mut rng,
        &more[bound + 1],
        DecryptError::TooFarAhead {
            skip: u64::from(MAX_SKIP_PER_CHAIN) + 1,
            max: MAX_SKIP_PER_CHAIN,
        },
    );
    assert_eq!(bob.decrypt(&mut rng, &more[bound]).unwrap(), b"y");
}

#[test]
fn previous_chain_length_beyond_the_bound_is_refused() {
    let mut rng = rng(6);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let first = alice.encrypt(&mut rng, b"0").unwrap();
    bob.decrypt(&mut rng, &first).unwrap();
    for _ in 0..MAX_SKIP_PER_CHAIN + 1 {
        alice.encrypt(&mut rng, b"lost").unwrap();
    }
    let reply = bob.encrypt(&mut rng, b"r").unwrap();
    alice.decrypt(&mut rng, &reply).unwrap();
    let next_chain = alice.encrypt(&mut rng, b"n").unwrap();
    assert_eq!(
        header_of(&next_chain).previous_chain_length,
        MAX_SKIP_PER_CHAIN + 2
    );
    let rng_before = rng.clone();
    refused(
        &mut bob,
        &mut rng,
        &next_chain,
        DecryptError::TooFarAhead {
            skip: u64::from(MAX_SKIP_PER_CHAIN) + 1,
            max: MAX_SKIP_PER_CHAIN,
        },
    );
    assert_eq!(rng.next_u64(), rng_before.clone().next_u64());
}

#[test]
fn total_cap_evicts_the_oldest_keys_first() {
    let mut rng = rng(7);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let skip = MAX_SKIP_PER_CHAIN as usize;
    let mut chains: Vec<Vec<Vec<u8>>> = Vec::new();
    // Two chains, each with `skip` keys skipped: the store is full.
    for _ in 0..MAX_SKIPPED_KEYS_TOTAL / skip {
        let chain: Vec<Vec<u8>> = (0..=skip)
            .map(|i| alice.encrypt(&mut rng, &i.to_be_bytes()).unwrap())
            .collect();
        bob.decrypt(&mut rng, &chain[skip]).unwrap();
        let reply = bob.encrypt(&mut rng, b"r").unwrap();
        alice.decrypt(&mut rng, &reply).unwrap();
        chains.push(chain);
    }
    assert_eq!(bob.skipped_key_count(), MAX_SKIPPED_KEYS_TOTAL);
    // Ten more skipped keys evict the ten oldest: messages 0..10 of chain 0.
    let third: Vec<Vec<u8>> = (0..=10usize)
        .map(|i| alice.encrypt(&mut rng, &i.to_be_bytes()).unwrap())
        .collect();
    bob.decrypt(&mut rng, &third[10]).unwrap();
    assert_eq!(bob.skipped_key_count(), MAX_SKIPPED_KEYS_TOTAL);
    for evicted in &chains[0][..10] {
        refused(
            &mut bob,
            &mut rng,
            evicted,
            DecryptError::Duplicate {
                message_number: header_of(evicted).message_number,
            },
        );
    }
    assert_eq!(
        bob.decrypt(&mut rng, &chains[0][10]).unwrap(),
        10usize.to_be_bytes()
    );
    assert_eq!(
        bob.decrypt(&mut rng, &chains[1][0]).unwrap(),
        0usize.to_be_bytes()
    );
    assert_eq!(
        bob.decrypt(&mut rng, &third[0]).unwrap(),
        0usize.to_be_bytes()
    );
    assert_eq!(bob.skipped_key_count(), MAX_SKIPPED_KEYS_TOTAL - 3);
}

/// A mid-conversation Bob with skipped keys in an old and in the current chain.
fn busy_bob(rng: &mut ChaCha20Rng) -> (RatchetSession, RatchetSession, Vec<Vec<u8>>) {
    let Pair {
        mut alice, mut bob, ..
    } = pair(rng);
    let old: Vec<Vec<u8>> = (0..4)
        .map(|_| alice.encrypt(rng, b"old").unwrap())
        .collect();
    bob.decrypt(rng, &old[0]).unwrap();
    let reply = bob.encrypt(rng, b"r").unwrap();
    alice.decrypt(rng, &reply).unwrap();
    let current: Vec<Vec<u8>> = (0..4)
        .map(|_| alice.encrypt(rng, b"current").unwrap())
        .collect();
    bob.decrypt(rng, &current[2]).unwrap();
    assert_eq!(bob.skipped_key_count(), 5);
    let mut pending = vec![old[1].clone(), current[0].clone(), current[3].clone()];
    pending.push(old[0].clone()); // already decrypted
    pending.push(current[2].clone()); // already decrypted
    (alice, bob, pending)
}

#[test]
fn every_failure_kind_leaves_the_session_unchanged() {
    let mut rng = rng(8);
    let (mut alice, mut bob, pending) = busy_bob(&mut rng);
    let fresh = alice.encrypt(&mut rng, b"fresh message").unwrap();

    // Tampering with any byte of the version, the header, the ciphertext or the tag.
    for position in 0..fresh.len() {
        let mut tampered = fresh.clone();
        tampered[position] ^= 0x01;
        refused_any(&mut bob, &mut rng, &tampered);
    }
    // Tampering with a message whose key is in the skipped store.
    let mut tampered = pending[0].clone();
    *tampered.last_mut().unwrap() ^= 0x80;
    refused(
        &mut bob,
        &mut rng,
        &tampered,
        DecryptError::AuthenticationFailed,
    );
    // Unknown version.
    let mut versioned = fresh.clone();
    versioned[0] = 0x02;
    refused(
        &mut bob,
        &mut rng,
        &versioned,
        DecryptError::UnsupportedVersion { version: 0x02 },
    );
    refused(
        &mut bob,
        &mut rng,
        &[0xff],
        DecryptError::UnsupportedVersion { version: 0xff },
    );
    // Replays of already decrypted messages (old chain, current chain).
    refused(
        &mut bob,
        &mut rng,
        &pending[3],
        DecryptError::Duplicate { message_number: 0 },
    );
    refused(
        &mut bob,
        &mut rng,
        &pending[4],
        DecryptError::Duplicate { message_number: 2 },
    );
    // A message for another session.
    let mut other = pair(&mut rng);
    let foreign = other.alice.encrypt(&mut rng, b"not for bob").unwrap();
    refused(
        &mut bob,
        &mut rng,
        &foreign,
        DecryptError::AuthenticationFailed,
    );
    // A low-order ratchet key.
    let mut low_order = fresh.clone();
    low_order[1..33].fill(0);
    refused(
        &mut bob,
        &mut rng,
        &low_order,
        DecryptError::InvalidRatchetKey(KeyError::NonContributoryDh),
    );
    // The message number no sender uses.
    let mut max_n = fresh.clone();
    max_n[37..41].copy_from_slice(&u32::MAX.to_be_bytes());
    refused(
        &mut bob,
        &mut rng,
        &max_n,
        DecryptError::MessageNumberOutOfRange,
    );

    // Everything still works afterwards, including the pending skipped keys.
    assert_eq!(bob.decrypt(&mut rng, &fresh).unwrap(), b"fresh message");
    assert_eq!(bob.decrypt(&mut rng, &pending[0]).unwrap(), b"old");
    assert_eq!(bob.decrypt(&mut rng, &pending[1]).unwrap(), b"current");
    assert_eq!(bob.decrypt(&mut rng, &pending[2]).unwrap(), b"current");
}

#[test]
fn truncation_at_every_length_is_refused() {
    let mut rng = rng(9);
    let (mut alice, mut bob, _) = busy_bob(&mut rng);
    let message = alice.encrypt(&mut rng, b"some plaintext to cut").unwrap();
    for len in 0..message.len() {
        let expected = if len < RATCHET_MESSAGE_MIN_LEN {
            DecryptError::Truncated {
                len,
                min: RATCHET_MESSAGE_MIN_LEN,
            }
        } else {
            DecryptError::AuthenticationFailed
        };
        refused(&mut bob, &mut rng, &message[..len], expected);
    }
    assert_eq!(
        bob.decrypt(&mut rng, &message).unwrap(),
        b"some plaintext to cut"
    );
}

#[test]
fn replays_are_refused() {
    let mut rng = rng(10);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let m0 = alice.encrypt(&mut rng, b"m0").unwrap();
    let m1 = alice.encrypt(&mut rng, b"m1").unwrap();
    let m2 = alice.encrypt(&mut rng, b"m2").unwrap();
    bob.decrypt(&mut rng, &m2).unwrap();
    bob.decrypt(&mut rng, &m0).unwrap();
    // Replay on the current chain, from the skipped store and from the chain.
    refused(
        &mut bob,
        &mut rng,
        &m0,
        DecryptError::Duplicate { message_number: 0 },
    );
    refused(
        &mut bob,
        &mut rng,
        &m2,
        DecryptError::Duplicate { message_number: 2 },
    );
    // After a DH step: m1 is still pending, m0 replays as a duplicate of the old chain.
    let reply = bob.encrypt(&mut rng, b"r").unwrap();
    alice.decrypt(&mut rng, &reply).unwrap();
    let next = alice.encrypt(&mut rng, b"next").unwrap();
    bob.decrypt(&mut rng, &next).unwrap();
    refused(
        &mut bob,
        &mut rng,
        &m0,
        DecryptError::Duplicate { message_number: 0 },
    );
    assert_eq!(bob.decrypt(&mut rng, &m1).unwrap(), b"m1");
    // The old chain is now fully consumed: its replay fails authentication.
    refused(&mut bob, &mut rng, &m1, DecryptError::AuthenticationFailed);
    refused(
        &mut bob,
        &mut rng,
        &next,
        DecryptError::Duplicate { message_number: 0 },
    );
    refused_any(&mut alice, &mut rng, &reply);
}

#[test]
fn wrong_session_or_associated_data_is_refused() {
    let mut rng = rng(11);
    let Pair {
        mut alice,
        shared_secret,
        bob_prekey,
        ..
    } = pair(&mut rng);
    let message = alice.encrypt(&mut rng, b"hello").unwrap();
    // Same secret and prekey but different associated data.
    let mut wrong_ad =
        RatchetSession::new_responder(&shared_secret, &[9u8; 64], bob_prekey.clone());
    refused(
        &mut wrong_ad,
        &mut rng,
        &message,
        DecryptError::AuthenticationFailed,
    );
    // Different shared secret.
    let mut wrong_secret =
        RatchetSession::new_responder(&[0x55; 32], alice.associated_data(), bob_prekey.clone());
    refused(
        &mut wrong_secret,
        &mut rng,
        &message,
        DecryptError::AuthenticationFailed,
    );
    // Alice cannot read her own message: her current peer key is Bob's
    // prekey, for which she has no receiving chain.
    let mut as_bobs_key = message.clone();
    as_bobs_key[1..33].copy_from_slice(PublicKey::from(&bob_prekey).as_bytes());
    refused(
        &mut alice,
        &mut rng,
        &as_bobs_key,
        DecryptError::NoReceivingChain,
    );
}

#[test]
fn low_order_initial_ratchet_key_is_refused() {
    let mut rng = rng(12);
    let err = RatchetSession::new_initiator(&mut rng, &[1; 32], b"ad", &PublicKey::from([0u8; 32]))
        .unwrap_err();
    assert_eq!(err, KeyError::NonContributoryDh);
}
