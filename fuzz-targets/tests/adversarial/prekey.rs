//! Initial (prekey) messages (SPEC.md §4.3): replays and tampering must not
//! consume one-time prekeys or build sessions.

use microbot_crypto::Session;
use microbot_crypto::handshake::HandshakeError;
use microbot_crypto::prekeys::LocalPreKeys;
use microbot_crypto::session::SessionError;
use microbot_fuzz_targets::fixtures::{self, Sample};

fn accept(prekeys: &mut LocalPreKeys, message: &[u8]) -> Result<Vec<u8>, SessionError> {
    let devices = fixtures::devices();
    Session::accept(&mut fixtures::rng(9), &devices.bob, prekeys, message).map(|(_, p)| p)
}

fn sample(name: &str) -> &'static Sample {
    fixtures::initial_messages()
        .iter()
        .find(|s| s.name == name)
        .unwrap()
}

#[test]
fn a_replayed_initial_message_cannot_reuse_its_one_time_prekey() {
    for name in ["hybrid-one-time", "classical-one-time"] {
        let message = sample(name);
        let mut prekeys = fixtures::devices().bob_prekeys.clone();
        let count = prekeys.one_time_count();
        assert_eq!(
            accept(&mut prekeys, &message.bytes).unwrap(),
            message.plaintext
        );
        assert_eq!(prekeys.one_time_count(), count - 1);
        let before = prekeys.to_bytes();
        assert!(matches!(
            accept(&mut prekeys, &message.bytes),
            Err(SessionError::Handshake(
                HandshakeError::UnknownOneTimePreKey(_)
            ))
        ));
        assert!(*prekeys.to_bytes() == *before);
    }
}

#[test]
fn tampered_initial_messages_consume_nothing() {
    for message in fixtures::initial_messages() {
        let mut prekeys = fixtures::devices().bob_prekeys.clone();
        let before = prekeys.to_bytes();
        // Every byte for the classical messages; every 7th for the hybrid
        // ones, whose 1088-byte KEM ciphertext makes them long.
        let step = if message.bytes.len() > 512 { 7 } else { 1 };
        for at in (0..message.bytes.len()).step_by(step) {
            let mut tampered = message.bytes.clone();
            tampered[at] ^= 0x01;
            match accept(&mut prekeys, &tampered) {
                // A flip in the unauthenticated protobuf wrapper can leave an
                // equivalent message; it must still be Alice's.
                Ok(plaintext) => {
                    assert_eq!(plaintext, message.plaintext, "byte {at}");
                    prekeys = fixtures::devices().bob_prekeys.clone();
                }
                Err(_) => assert!(*prekeys.to_bytes() == *before, "byte {at}"),
            }
        }
        for len in 0..message.bytes.len() {
            assert!(accept(&mut prekeys, &message.bytes[..len]).is_err());
        }
        assert!(*prekeys.to_bytes() == *before);
        assert_eq!(
            accept(&mut prekeys, &message.bytes).unwrap(),
            message.plaintext
        );
    }
}
