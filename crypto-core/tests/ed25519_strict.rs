//! Ed25519 as SPEC.md §2 specifies it: cofactorless strict verification
//! (ed25519-dalek `verify_strict`), canonical and non-small-order keys,
//! small-order `R` refused, `s < ℓ`; keys with only a small-order
//! *component* are accepted.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use microbot_crypto::{IdentityKey, IdentityKeyPair, KeyError};
use sha2::{Digest, Sha512};

/// `p + y` as a 32-byte little-endian encoding (sign bit clear), `y ≤ 18`.
fn non_canonical(y: u8) -> [u8; 32] {
    let mut bytes = [0xffu8; 32];
    bytes[0] = 0xed + y;
    bytes[31] = 0x7f;
    bytes
}

#[test]
fn non_canonical_key_encodings_are_refused() {
    let mut found = 0;
    for y in 0..=18u8 {
        for sign in [0u8, 0x80] {
            let mut bytes = non_canonical(y);
            bytes[31] |= sign;
            let Ok(key) = VerifyingKey::from_bytes(&bytes) else {
                continue;
            };
            // The library decodes it (y is reduced mod p); we must not.
            assert_eq!(
                IdentityKey::from_bytes(&bytes),
                Err(KeyError::InvalidPublicKey)
            );
            if !key.is_weak() {
                found += 1;
            }
        }
    }
    assert!(
        found > 0,
        "a non-canonical encoding of a large-order point exists"
    );
}

#[test]
fn keys_with_a_small_order_component_are_accepted() {
    let identity = IdentityKeyPair::generate(&mut rand::rng());
    let point = CompressedEdwardsY(identity.public().to_bytes())
        .decompress()
        .unwrap();
    let mixed = (point + EIGHT_TORSION[1]).compress().to_bytes();
    assert!(IdentityKey::from_bytes(&mixed).is_ok());
    // A pure small-order point is refused.
    let torsion = EIGHT_TORSION[1].compress().to_bytes();
    assert_eq!(
        IdentityKey::from_bytes(&torsion),
        Err(KeyError::InvalidPublicKey)
    );
}

#[test]
fn small_order_r_is_refused_even_when_the_equation_holds() {
    let secret = Scalar::from_bytes_mod_order([7u8; 32]);
    let public = (ED25519_BASEPOINT_POINT * secret).compress();
    let key = IdentityKey::from_bytes(public.as_bytes()).unwrap();
    let message = b"small order R";
    // R = the identity point; s = k·a makes [s]B − [k]A = identity = R.
    let mut r = [0u8; 32];
    r[0] = 1;
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r)
            .chain_update(public.as_bytes())
            .chain_update(message),
    );
    let s = k * secret;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r);
    signature[32..].copy_from_slice(s.as_bytes());
    // Lax (non-strict) verification accepts it; the SPEC's strict one must not.
    let lax = VerifyingKey::from_bytes(public.as_bytes()).unwrap();
    assert!(
        lax.verify(message, &Signature::from_bytes(&signature))
            .is_ok()
    );
    assert_eq!(key.verify(message, &signature), Err(KeyError::BadSignature));
}

#[test]
fn non_canonical_s_is_refused() {
    let identity = IdentityKeyPair::generate(&mut rand::rng());
    let mut signature = identity.sign(b"message");
    identity.public().verify(b"message", &signature).unwrap();
    // s + ℓ (still below 2^253) encodes the same scalar non-canonically.
    let ell: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, add) in signature[32..].iter_mut().zip(ell) {
        let sum = u16::from(*byte) + u16::from(add) + carry;
        *byte = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(
        identity.public().verify(b"message", &signature),
        Err(KeyError::BadSignature)
    );
}

/// The crate's verification refuses the eight small-order encodings of `R`
/// up front instead of decompressing `R` as `verify_strict` does; it must
/// accept and refuse exactly the same signatures. A key with a small-order
/// component lets `[s]B − [k]A` land on every small-order point, so each of
/// them (and the non-canonical encodings of small-order points) is tried
/// with signatures where the cofactorless equation holds.
#[test]
fn verification_agrees_with_verify_strict_on_small_order_r() {
    let a = Scalar::from_bytes_mod_order([9u8; 32]);
    let public = (ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1]).compress();
    let key = IdentityKey::from_bytes(public.as_bytes()).unwrap();
    let library = VerifyingKey::from_bytes(public.as_bytes()).unwrap();
    let mut encodings: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|p| p.compress().to_bytes())
        .collect();
    for y in 0..=18u8 {
        for sign in [0u8, 0x80] {
            let mut bytes = non_canonical(y);
            bytes[31] |= sign;
            if CompressedEdwardsY(bytes)
                .decompress()
                .is_some_and(|p| p.is_small_order())
            {
                encodings.push(bytes);
            }
        }
    }
    let mut lax_fooled = 0;
    for r in encodings {
        for counter in 0u32..48 {
            let message = counter.to_be_bytes();
            let k = Scalar::from_hash(
                Sha512::new()
                    .chain_update(r)
                    .chain_update(public.as_bytes())
                    .chain_update(message),
            );
            // [s]B − [k]A = −[k]T for s = k·a: a small-order point.
            let s = k * a;
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&r);
            signature[32..].copy_from_slice(s.as_bytes());
            let parsed = Signature::from_bytes(&signature);
            let strict = library.verify_strict(&message, &parsed).is_ok();
            assert!(!strict);
            assert_eq!(key.verify(&message, &signature).is_ok(), strict);
            if library.verify(&message, &parsed).is_ok() {
                lax_fooled += 1;
            }
        }
    }
    assert!(lax_fooled > 0, "the forged signatures satisfy the equation");
}

/// Valid signatures and single-byte corruptions of them: same outcome as
/// `verify_strict`.
#[test]
fn verification_agrees_with_verify_strict_on_corruptions() {
    let identity = IdentityKeyPair::generate(&mut rand::rng());
    let library = VerifyingKey::from_bytes(&identity.public().to_bytes()).unwrap();
    for n in 0..16u8 {
        let message = [n; 40];
        let signature = identity.sign(&message);
        identity.public().verify(&message, &signature).unwrap();
        for position in (0..64).step_by(3) {
            for flip in [0x01u8, 0x80] {
                let mut corrupted = signature;
                corrupted[position] ^= flip;
                let strict = library
                    .verify_strict(&message, &Signature::from_bytes(&corrupted))
                    .is_ok();
                assert_eq!(
                    identity.public().verify(&message, &corrupted).is_ok(),
                    strict
                );
            }
        }
    }
}
