//! The header layout (SPEC.md §5.4) and the traced intermediate values
//! (§5.9) recomputed from the formulas of §5.3 with the public KDF helpers.

use microbot_crypto::kdf::{aead_seal, hkdf_sha256, hmac_sha256};
use microbot_crypto::labels::{RATCHET_MESSAGE_INFO, RATCHET_ROOT_INFO};
use microbot_crypto::ratchet::{RATCHET_HEADER_LEN, RatchetHeader, RatchetSession};
use rand_core::Rng;
use x25519_dalek::{PublicKey, StaticSecret};

use super::{Pair, pair, rng};

#[test]
fn header_layout_is_fixed_width_big_endian() {
    let header = RatchetHeader {
        ratchet_key: [0xab; 32],
        previous_chain_length: 0x0102_0304,
        message_number: 0x0a0b_0c0d,
    };
    let encoded = header.encode();
    assert_eq!(encoded.len(), RATCHET_HEADER_LEN);
    assert_eq!(&encoded[..32], &[0xab; 32]);
    assert_eq!(&encoded[32..], &[1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
    assert_eq!(RatchetHeader::decode(&encoded), header);
}

#[test]
fn traces_match_the_spec_formulas() {
    let mut rng = rng(15);
    let mut shared_secret = [0u8; 32];
    rng.fill_bytes(&mut shared_secret);
    let ad = [7u8; 64];
    let bob_prekey = StaticSecret::random_from_rng(&mut rng);
    let (mut alice, init) = RatchetSession::new_initiator_traced(
        &mut rng,
        &shared_secret,
        &ad,
        &PublicKey::from(&bob_prekey),
    )
    .unwrap();
    let mut bob = RatchetSession::new_responder(&shared_secret, &ad, bob_prekey.clone());

    // Alice's first root step: KDF_RK(SK, DH(alice, bob_prekey)).
    assert_eq!(init.previous_root_key, shared_secret);
    assert_eq!(init.own_ratchet_key, *alice.own_ratchet_key().as_bytes());
    assert_eq!(
        init.dh_output,
        bob_prekey
            .diffie_hellman(&PublicKey::from(init.own_ratchet_key))
            .to_bytes()
    );
    let okm = hkdf_sha256::<64>(&shared_secret, &init.dh_output, RATCHET_ROOT_INFO);
    assert_eq!(init.root_key[..], okm[..32]);
    assert_eq!(init.chain_key[..], okm[32..]);

    let mut chain_key = init.chain_key;
    for i in 0..3u32 {
        let plaintext = format!("message {i}");
        let (wire, sent) = alice
            .encrypt_traced(&mut rng, plaintext.as_bytes())
            .unwrap();
        assert_eq!(sent.chain_key, Some(chain_key));
        assert_eq!(sent.message_key, *hmac_sha256(&chain_key, &[0x01]));
        let expanded = hkdf_sha256::<44>(&[0u8; 32], &sent.message_key, RATCHET_MESSAGE_INFO);
        assert_eq!(sent.aead_key[..], expanded[..32]);
        assert_eq!(sent.nonce[..], expanded[32..]);
        let header = RatchetHeader::decode(&sent.header);
        assert_eq!(header.ratchet_key, init.own_ratchet_key);
        assert_eq!(
            (header.previous_chain_length, header.message_number),
            (0, i)
        );
        // AD ‖ version ‖ header (SPEC.md §5.4): the version byte is authenticated.
        assert_eq!(
            sent.associated_data,
            [&ad[..], &[0x01], &sent.header[..]].concat()
        );
        assert_eq!(&wire[..41], [&[0x01], &sent.header[..]].concat());
        assert_eq!(
            sent.sealed,
            aead_seal(
                &sent.aead_key,
                &sent.nonce,
                &sent.associated_data,
                plaintext.as_bytes()
            )
        );
        assert_eq!(wire, [&[0x01][..], &sent.header, &sent.sealed].concat());
        assert!(sent.root_steps.is_empty());

        let (opened, received) = bob.decrypt_traced(&mut rng, &wire).unwrap();
        assert_eq!(opened, plaintext.as_bytes());
        assert_eq!(received.message_key, sent.message_key);
        assert_eq!(received.chain_key, sent.chain_key);
        assert_eq!(received.nonce, sent.nonce);
        if i == 0 {
            // Bob's DH ratchet step: receiving step with his prekey, then a
            // sending step with a fresh key pair.
            let [receiving, sending] = &received.root_steps[..] else {
                panic!("expected two root steps, got {}", received.root_steps.len());
            };
            assert_eq!(receiving.previous_root_key, shared_secret);
            assert_eq!(receiving.root_key, init.root_key);
            assert_eq!(receiving.chain_key, init.chain_key);
            assert_eq!(
                receiving.own_ratchet_key,
                *PublicKey::from(&bob_prekey).as_bytes()
            );
            assert_eq!(sending.previous_root_key, receiving.root_key);
            assert_eq!(sending.own_ratchet_key, *bob.own_ratchet_key().as_bytes());
            let okm = hkdf_sha256::<64>(
                &sending.previous_root_key,
                &sending.dh_output,
                RATCHET_ROOT_INFO,
            );
            assert_eq!(sending.root_key[..], okm[..32]);
        } else {
            assert!(received.root_steps.is_empty());
        }
        chain_key = *hmac_sha256(&chain_key, &[0x02]);
    }
    let (_, from_skipped_store) = {
        let a = alice.encrypt(&mut rng, b"late").unwrap();
        let b = alice.encrypt(&mut rng, b"early").unwrap();
        bob.decrypt(&mut rng, &b).unwrap();
        bob.decrypt_traced(&mut rng, &a).unwrap()
    };
    assert_eq!(from_skipped_store.chain_key, None);
}

#[test]
fn debug_output_hides_secrets() {
    let mut rng = rng(16);
    let Pair { mut alice, .. } = pair(&mut rng);
    let (_, trace) = alice.encrypt_traced(&mut rng, b"secret").unwrap();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let printed = format!("{alice:?} {trace:?} {:?}", trace.root_steps);
    for secret in [
        &trace.message_key[..],
        &trace.aead_key[..],
        &trace.chain_key.unwrap()[..],
    ] {
        assert!(!printed.contains(&hex(&secret[..4])), "{printed}");
        let decimal = format!("{:?}", &secret[..4]);
        assert!(
            !printed.contains(decimal.trim_matches(['[', ']'])),
            "{printed}"
        );
    }
}
