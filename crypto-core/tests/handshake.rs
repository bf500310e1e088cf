//! Handshake and session tests through the public API (SPEC.md §4).

use microbot_crypto::handshake::{self, HandshakeError, HandshakeMode};
use microbot_crypto::prekeys::{KemPreKey, LocalPreKeys, PreKeyBundle, SignedPreKey};
use microbot_crypto::session::{MessageKind, Session, SessionError};
use microbot_crypto::{IdentityKeyPair, KeyError};

struct Device {
    identity: IdentityKeyPair,
    prekeys: LocalPreKeys,
}

fn device(with_kem: bool) -> (Device, PreKeyBundle) {
    let mut rng = rand::rng();
    let identity = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPreKeys::new();
    // A device without KEM prekeys signs its signed prekey with kem_flag 0x00.
    prekeys.add_signed(if with_kem {
        SignedPreKey::generate(&mut rng, &identity, 7)
    } else {
        SignedPreKey::generate_classical(&mut rng, &identity, 7)
    });
    if with_kem {
        prekeys.add_kem(KemPreKey::generate(&mut rng, &identity, 9));
    }
    let one_time = prekeys.generate_one_time(&mut rng, 5);
    let bundle = PreKeyBundle {
        identity: *identity.public(),
        signed_prekey: prekeys.latest_signed().unwrap().public().clone(),
        one_time_prekey: Some(one_time[0]),
        kem_prekey: prekeys.latest_kem().map(|k| k.public().clone()),
    };
    (Device { identity, prekeys }, bundle)
}

fn converse(with_kem: bool, with_one_time: bool) {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (mut bob, mut bundle) = device(with_kem);
    if !with_one_time {
        bundle.one_time_prekey = None;
    }
    let mut a = Session::initiate(&mut rng, &alice, &bundle).unwrap();
    let expected_mode = if with_kem {
        HandshakeMode::Hybrid
    } else {
        HandshakeMode::Classical
    };
    assert_eq!(a.mode(), expected_mode);
    let first = a.encrypt(&mut rng, b"hello bob").unwrap();
    let second = a.encrypt(&mut rng, b"are you there?").unwrap();
    assert!(matches!(
        Session::peek(&first).unwrap(),
        MessageKind::PreKey { .. }
    ));

    let before = bob.prekeys.one_time_count();
    let (mut b, plaintext) =
        Session::accept(&mut rng, &bob.identity, &mut bob.prekeys, &first).unwrap();
    assert_eq!(plaintext, b"hello bob");
    assert_eq!(b.mode(), expected_mode);
    assert_eq!(b.remote_identity(), alice.public());
    let used = usize::from(with_one_time);
    assert_eq!(bob.prekeys.one_time_count(), before - used);

    // A second prekey message of the same handshake decrypts on the existing session.
    assert_eq!(b.decrypt(&mut rng, &second).unwrap(), b"are you there?");
    let reply = b.encrypt(&mut rng, b"hi alice").unwrap();
    assert_eq!(Session::peek(&reply).unwrap(), MessageKind::Ratchet);
    assert_eq!(a.decrypt(&mut rng, &reply).unwrap(), b"hi alice");
    assert!(!a.awaiting_reply());
    let third = a.encrypt(&mut rng, b"good").unwrap();
    assert_eq!(Session::peek(&third).unwrap(), MessageKind::Ratchet);
    assert_eq!(b.decrypt(&mut rng, &third).unwrap(), b"good");

    // Replaying the initial message as a new session is refused when its
    // one-time prekey was used.
    if with_one_time {
        let replay = Session::accept(&mut rng, &bob.identity, &mut bob.prekeys, &first);
        assert!(matches!(
            replay,
            Err(SessionError::Handshake(
                HandshakeError::UnknownOneTimePreKey(_)
            ))
        ));
    }
}

#[test]
fn classical_with_one_time_prekey() {
    converse(false, true);
}

#[test]
fn classical_without_one_time_prekey() {
    converse(false, false);
}

#[test]
fn hybrid_with_one_time_prekey() {
    converse(true, true);
}

#[test]
fn hybrid_without_one_time_prekey() {
    converse(true, false);
}

#[test]
fn both_sides_derive_the_same_secret_and_ad() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (bob, bundle) = device(true);
    let (a, header) = handshake::initiate(&mut rng, &alice, &bundle).unwrap();
    let (b, _) = handshake::respond(&bob.identity, &bob.prekeys, &header).unwrap();
    assert_eq!(*a.shared_secret, *b.shared_secret);
    assert_eq!(a.associated_data, b.associated_data);
    assert_eq!(&a.associated_data[..32], &alice.public().to_bytes());
    assert_eq!(&a.associated_data[32..], &bob.identity.public().to_bytes());
    assert_eq!(a.trace.kem_shared_secret.len(), 32);
    assert_eq!(*a.trace.dh4, *b.trace.dh4);
}

#[test]
fn bad_signed_prekey_signature_is_refused() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (_, mut bundle) = device(false);
    bundle.signed_prekey.signature[5] ^= 1;
    assert_eq!(
        Session::initiate(&mut rng, &alice, &bundle).unwrap_err(),
        SessionError::Handshake(HandshakeError::InvalidKey(KeyError::BadSignature))
    );
    // A signed prekey signed by someone else is refused too.
    let (_, mut bundle) = device(false);
    let (_, other) = device(false);
    bundle.signed_prekey = other.signed_prekey;
    assert!(Session::initiate(&mut rng, &alice, &bundle).is_err());
}

#[test]
fn bad_kem_prekey_signature_is_refused() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (_, mut bundle) = device(true);
    if let Some(kem) = bundle.kem_prekey.as_mut() {
        kem.public_key[100] ^= 1;
    }
    assert_eq!(
        Session::initiate(&mut rng, &alice, &bundle).unwrap_err(),
        SessionError::Handshake(HandshakeError::InvalidKey(KeyError::BadSignature))
    );
}

#[test]
fn low_order_prekeys_are_refused() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (_, mut bundle) = device(false);
    let mut one_time = bundle.one_time_prekey.unwrap();
    one_time.public_key = [0u8; 32];
    bundle.one_time_prekey = Some(one_time);
    assert_eq!(
        Session::initiate(&mut rng, &alice, &bundle).unwrap_err(),
        SessionError::Handshake(HandshakeError::InvalidKey(KeyError::NonContributoryDh))
    );
}

#[test]
fn tampered_initial_message_keeps_the_one_time_prekey() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (mut bob, bundle) = device(true);
    let mut a = Session::initiate(&mut rng, &alice, &bundle).unwrap();
    let mut first = a.encrypt(&mut rng, b"hello").unwrap();
    let last = first.len() - 1;
    first[last] ^= 0x80;
    let before = bob.prekeys.one_time_count();
    assert!(Session::accept(&mut rng, &bob.identity, &mut bob.prekeys, &first).is_err());
    assert_eq!(bob.prekeys.one_time_count(), before);
    // Garbage of every short length is a typed error, never a panic.
    for len in 0..first.len().min(200) {
        assert!(Session::accept(&mut rng, &bob.identity, &mut bob.prekeys, &first[..len]).is_err());
    }
}

#[test]
fn session_and_prekeys_survive_save_and_restore() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let (mut bob, bundle) = device(true);
    let restored = LocalPreKeys::from_bytes(&bob.identity, &bob.prekeys.to_bytes()).unwrap();
    assert_eq!(restored.one_time_count(), bob.prekeys.one_time_count());
    bob.prekeys = restored;

    let a = Session::initiate(&mut rng, &alice, &bundle).unwrap();
    let mut a = Session::from_bytes(&a.to_bytes()).unwrap();
    assert!(a.awaiting_reply());
    let first = a.encrypt(&mut rng, b"one").unwrap();
    let (b, _) = Session::accept(&mut rng, &bob.identity, &mut bob.prekeys, &first).unwrap();
    let mut b = Session::from_bytes(&b.to_bytes()).unwrap();
    let reply = b.encrypt(&mut rng, b"two").unwrap();
    assert_eq!(a.decrypt(&mut rng, &reply).unwrap(), b"two");
    assert!(Session::from_bytes(b"\x08\x02").is_err());
    assert!(LocalPreKeys::from_bytes(&bob.identity, b"\x08\x09").is_err());
}

#[test]
fn debug_output_hides_secrets() {
    let (bob, _) = device(true);
    let rendered = format!("{:?} {:?}", bob.prekeys, bob.identity);
    let seed: String = bob
        .identity
        .to_seed()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!rendered.contains(&seed[..16]));
}
