//! Safety numbers through the public API (SPEC.md §8).

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::fingerprint::{FingerprintError, QR_PAYLOAD_LEN, SafetyNumber};
use microbot_crypto::labels::{FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION};
use sha2::{Digest, Sha512};

fn identity(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_seed(&[seed; 32])
}

#[test]
fn both_sides_see_the_same_number() {
    let (alice, bob) = (identity(1), identity(2));
    let at_alice = SafetyNumber::new(alice.public(), b"alice", bob.public(), b"bob");
    let at_bob = SafetyNumber::new(bob.public(), b"bob", alice.public(), b"alice");
    assert_eq!(at_alice.digits(), at_bob.digits());
    assert_eq!(at_alice.display(), at_bob.display());
}

#[test]
fn digits_are_sixty_in_twelve_groups_of_five() {
    let number = SafetyNumber::new(identity(3).public(), b"a", identity(4).public(), b"b");
    assert_eq!(number.digits().len(), 60);
    assert!(number.digits().bytes().all(|b| b.is_ascii_digit()));
    let groups = number.groups();
    assert_eq!(groups.len(), 12);
    assert!(groups.iter().all(|g| g.len() == 5));
    assert_eq!(number.display().len(), 60 + 11);
    assert_eq!(number.display().replace(' ', ""), number.digits());
    assert_eq!(number.to_string(), number.display());
}

/// An independent computation of the SPEC.md §8 algorithm.
fn reference_digits(key: &[u8; 32], user_id: &[u8]) -> String {
    let mut hash = [FINGERPRINT_VERSION.to_be_bytes().as_slice(), key, user_id].concat();
    for _ in 0..FINGERPRINT_ITERATIONS {
        hash = Sha512::new()
            .chain_update(&hash)
            .chain_update(key)
            .finalize()
            .to_vec();
    }
    (0..6)
        .map(|i| {
            let chunk = &hash[i * 5..i * 5 + 5];
            let value = chunk.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

#[test]
fn digits_follow_the_specified_algorithm() {
    let (alice, bob) = (identity(5), identity(6));
    let number = SafetyNumber::new(alice.public(), b"alice", bob.public(), b"bob");
    let a = reference_digits(&alice.public().to_bytes(), b"alice");
    let b = reference_digits(&bob.public().to_bytes(), b"bob");
    let expected = if a <= b { a + &b } else { b + &a };
    assert_eq!(number.digits(), expected);
}

#[test]
fn number_changes_when_either_identity_or_user_id_changes() {
    let (alice, bob, eve) = (identity(7), identity(8), identity(9));
    let base = SafetyNumber::new(alice.public(), b"alice", bob.public(), b"bob");
    let other_remote = SafetyNumber::new(alice.public(), b"alice", eve.public(), b"bob");
    let other_local = SafetyNumber::new(eve.public(), b"alice", bob.public(), b"bob");
    let other_id = SafetyNumber::new(alice.public(), b"alice", bob.public(), b"bob2");
    for changed in [&other_remote, &other_local, &other_id] {
        assert_ne!(changed.digits(), base.digits());
    }
}

#[test]
fn qr_payload_round_trip_and_mismatch() {
    let (alice, bob, eve) = (identity(10), identity(11), identity(12));
    let at_alice = SafetyNumber::new(alice.public(), b"alice", bob.public(), b"bob");
    let at_bob = SafetyNumber::new(bob.public(), b"bob", alice.public(), b"alice");
    let shown_by_alice = at_alice.qr_payload();
    assert_eq!(shown_by_alice.len(), QR_PAYLOAD_LEN);
    assert_eq!(shown_by_alice[..2], FINGERPRINT_VERSION.to_be_bytes());
    assert_eq!(at_bob.verify_scanned(&shown_by_alice), Ok(true));
    assert_eq!(at_alice.verify_scanned(&at_bob.qr_payload()), Ok(true));
    // Scanning your own screen is not a match (the halves are swapped).
    assert_eq!(at_alice.verify_scanned(&shown_by_alice), Ok(false));

    // Bob talks to Eve posing as Alice: Alice's screen does not match.
    let at_bob_mitm = SafetyNumber::new(bob.public(), b"bob", eve.public(), b"alice");
    assert_eq!(at_bob_mitm.verify_scanned(&shown_by_alice), Ok(false));
    let mut flipped = shown_by_alice;
    flipped[40] ^= 1;
    assert_eq!(at_bob.verify_scanned(&flipped), Ok(false));

    assert_eq!(
        at_bob.verify_scanned(&shown_by_alice[..65]),
        Err(FingerprintError::InvalidLength {
            expected: 66,
            actual: 65
        })
    );
    let mut other_version = shown_by_alice;
    other_version[1] = 9;
    assert_eq!(
        at_bob.verify_scanned(&other_version),
        Err(FingerprintError::VersionMismatch {
            theirs: 9,
            ours: FINGERPRINT_VERSION
        })
    );
}
