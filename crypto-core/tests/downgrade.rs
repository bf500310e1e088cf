//! The hybrid handshake cannot be downgraded (SPEC.md §4.1, §4.2): the signed
//! prekey's signature covers `kem_flag`, so a bundle stripped of the KEM
//! prekey its device advertises is refused by the initiator, and a classical
//! initial message naming such a signed prekey is refused by the responder.
//! A genuinely classical device (kem_flag 0x00) still gets a classical
//! session. The KEM key must also pass the FIPS 203 encapsulation-key check.

use microbot_crypto::handshake::{self, HandshakeError, HandshakeMode};
use microbot_crypto::labels::{KEM_PREKEY_CONTEXT, SIGNED_PREKEY_CONTEXT};
use microbot_crypto::prekeys::{KemPreKey, LocalPreKeys, PreKeyBundle, SignedPreKey};
use microbot_crypto::session::{Session, SessionError};
use microbot_crypto::{IdentityKeyPair, KeyError};

struct Device {
    identity: IdentityKeyPair,
    prekeys: LocalPreKeys,
    bundle: PreKeyBundle,
}

fn device(publishes_kem: bool) -> Device {
    let mut rng = rand::rng();
    let identity = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPreKeys::new();
    let signed = if publishes_kem {
        SignedPreKey::generate(&mut rng, &identity, 3)
    } else {
        SignedPreKey::generate_classical(&mut rng, &identity, 3)
    };
    assert_eq!(signed.publishes_kem_prekeys(), publishes_kem);
    prekeys.add_signed(signed);
    if publishes_kem {
        prekeys.add_kem(KemPreKey::generate(&mut rng, &identity, 4));
    }
    let one_time = prekeys.generate_one_time(&mut rng, 2);
    let bundle = PreKeyBundle {
        identity: *identity.public(),
        signed_prekey: prekeys.latest_signed().unwrap().public().clone(),
        one_time_prekey: Some(one_time[0]),
        kem_prekey: prekeys.latest_kem().map(|k| k.public().clone()),
    };
    Device {
        identity,
        prekeys,
        bundle,
    }
}

#[test]
fn bundle_stripped_of_its_kem_prekey_is_refused() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = device(true);
    let mut stripped = bob.bundle.clone();
    stripped.kem_prekey = None;
    assert_eq!(stripped.verify(), Err(HandshakeError::HybridRequired));
    assert_eq!(
        Session::initiate(&mut rng, &alice, &stripped).unwrap_err(),
        SessionError::Handshake(HandshakeError::HybridRequired)
    );
    // With the KEM prekey the same device gets a hybrid session.
    let session = Session::initiate(&mut rng, &alice, &bob.bundle).unwrap();
    assert_eq!(session.mode(), HandshakeMode::Hybrid);
}

#[test]
fn responder_refuses_a_classical_handshake_on_a_kem_advertising_prekey() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = device(true);
    let (_, mut header) = handshake::initiate(&mut rng, &alice, &bob.bundle).unwrap();
    assert!(header.kem.is_some());
    // An initiator that ignores the flag (or a forged message) goes classical.
    header.kem = None;
    let refused = handshake::respond(&bob.identity, &bob.prekeys, &header);
    assert!(matches!(refused, Err(HandshakeError::HybridRequired)));
}

#[test]
fn genuinely_classical_device_still_gets_a_classical_session() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let mut bob = device(false);
    assert!(bob.bundle.kem_prekey.is_none());
    assert_eq!(bob.bundle.verify(), Ok(()));
    let mut a = Session::initiate(&mut rng, &alice, &bob.bundle).unwrap();
    assert_eq!(a.mode(), HandshakeMode::Classical);
    let first = a.encrypt(&mut rng, b"classical hello").unwrap();
    let (b, plaintext) =
        Session::accept(&mut rng, &bob.identity, &mut bob.prekeys, &first).unwrap();
    assert_eq!(plaintext, b"classical hello");
    assert_eq!(b.mode(), HandshakeMode::Classical);
}

#[test]
fn the_kem_flag_is_signed_and_cannot_be_flipped() {
    let bob = device(true);
    let signed = &bob.bundle.signed_prekey;
    assert_eq!(signed.verify_kem_flag(&bob.bundle.identity), Ok(true));
    // The exact bytes signed (SPEC.md §4.1): context ‖ id ‖ public ‖ 0x01.
    let mut message = SIGNED_PREKEY_CONTEXT.to_vec();
    message.extend_from_slice(&signed.id.to_be_bytes());
    message.extend_from_slice(&signed.public_key);
    message.push(0x01);
    assert!(
        bob.bundle
            .identity
            .verify(&message, &signed.signature)
            .is_ok()
    );
    // The version-1 form without the flag byte is not a valid signature.
    message.pop();
    assert_eq!(
        bob.bundle.identity.verify(&message, &signed.signature),
        Err(KeyError::BadSignature)
    );
    let classical = device(false);
    assert_eq!(
        classical
            .bundle
            .signed_prekey
            .verify_kem_flag(&classical.bundle.identity),
        Ok(false)
    );
}

#[test]
fn kem_flag_survives_save_and_restore() {
    let bob = device(true);
    let restored = LocalPreKeys::from_bytes(&bob.identity, &bob.prekeys.to_bytes()).unwrap();
    assert!(restored.signed(3).unwrap().publishes_kem_prekeys());
    let classical = device(false);
    let restored =
        LocalPreKeys::from_bytes(&classical.identity, &classical.prekeys.to_bytes()).unwrap();
    assert!(!restored.signed(3).unwrap().publishes_kem_prekeys());
}

#[test]
fn kem_key_failing_the_fips_203_check_is_refused() {
    let mut rng = rand::rng();
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = device(true);
    let mut bundle = bob.bundle.clone();
    let kem = bundle.kem_prekey.as_mut().unwrap();
    // The first 12-bit coefficient becomes 0xFFF ≥ q = 3329: the modulus check fails.
    kem.public_key[0] = 0xFF;
    kem.public_key[1] |= 0x0F;
    let mut message = KEM_PREKEY_CONTEXT.to_vec();
    message.extend_from_slice(&kem.id.to_be_bytes());
    message.extend_from_slice(&kem.public_key);
    // Correctly signed by the owner: only the key check can refuse it.
    kem.signature = bob.identity.sign(&message);
    assert_eq!(
        bundle.verify(),
        Err(HandshakeError::InvalidKey(KeyError::InvalidPublicKey))
    );
    assert_eq!(
        Session::initiate(&mut rng, &alice, &bundle).unwrap_err(),
        SessionError::Handshake(HandshakeError::InvalidKey(KeyError::InvalidPublicKey))
    );
}
