//! Project Wycheproof vectors against the primitives as microbot-crypto uses
//! them: X25519, Ed25519 verification, ChaCha20-Poly1305, HKDF-SHA256 and
//! HMAC-SHA256. Every vector of each set is checked (or shown to be refused
//! by our API's types), and the count is asserted so no test passes silently.

use microbot_crypto::IdentityKey;
use microbot_crypto::kdf::{aead_open, aead_seal, hkdf_sha256, hmac_sha256};
use wycheproof::TestResult;

/// X25519. crypto-core has no public API that takes a raw X25519 scalar (the
/// identity's scalar is derived from its Ed25519 seed), so this drives
/// x25519-dalek directly with the same contributory check as `dh::diffie_hellman`:
/// an all-zero output is refused. Wycheproof marks every such case
/// (`ZeroSharedSecret`) "acceptable", so refusing them is allowed; every other
/// vector, valid or acceptable (twist points, non-canonical u), must give the
/// expected shared secret.
#[test]
fn x25519() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519).unwrap();
    let mut checked = 0;
    let mut refused_low_order = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            let private: [u8; 32] = test.private_key.as_slice().try_into().unwrap();
            let public: [u8; 32] = test.public_key.as_slice().try_into().unwrap();
            let secret = x25519_dalek::StaticSecret::from(private);
            let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(public));
            if shared.was_contributory() {
                assert_ne!(test.result, TestResult::Invalid, "tc {}", test.tc_id);
                assert_eq!(
                    shared.as_bytes().as_slice(),
                    test.shared_secret.as_slice(),
                    "tc {}",
                    test.tc_id
                );
            } else {
                assert_eq!(test.result, TestResult::Acceptable, "tc {}", test.tc_id);
                assert!(
                    test.flags
                        .contains(&wycheproof::xdh::TestFlag::ZeroSharedSecret),
                    "tc {} refused without a zero shared secret",
                    test.tc_id
                );
                assert!(test.shared_secret.iter().all(|&b| b == 0));
                refused_low_order += 1;
            }
            checked += 1;
        }
    }
    assert!(checked > 0);
    assert_eq!(checked, set.number_of_tests);
    assert!(refused_low_order > 0, "no low-order case was exercised");
}

/// Ed25519 verification through `IdentityKey::from_bytes` + `verify` (strict
/// RFC 8032 verification). Allowed divergence: `from_bytes` also refuses
/// public keys of small order; such a key is acceptable only in a vector
/// whose result is "invalid" (none of the valid vectors uses one, which this
/// test asserts).
#[test]
fn ed25519_verify() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut checked = 0;
    let mut invalid_refused = 0;
    for group in &set.test_groups {
        let key = IdentityKey::from_bytes(&group.key.pk);
        for test in &group.tests {
            let verified = match &key {
                Ok(key) => key.verify(&test.msg, &test.sig).is_ok(),
                Err(_) => false,
            };
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert!(
                        key.is_ok(),
                        "tc {}: valid vector with a refused key",
                        test.tc_id
                    );
                    assert!(
                        verified,
                        "tc {} ({:?}) should verify",
                        test.tc_id, test.flags
                    );
                }
                TestResult::Invalid => {
                    assert!(
                        !verified,
                        "tc {} ({:?}) must not verify",
                        test.tc_id, test.flags
                    );
                    invalid_refused += 1;
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 0 && invalid_refused > 0);
    assert_eq!(checked, set.number_of_tests);
}

/// ChaCha20-Poly1305 through `kdf::aead_seal` / `kdf::aead_open`. Vectors with
/// a nonce other than 96 bits cannot even be expressed (the API takes
/// `&[u8; 12]`); they are all "invalid", which this test asserts.
#[test]
fn chacha20_poly1305() {
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305).unwrap();
    let mut checked = 0;
    let mut through_api = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            checked += 1;
            let key: Result<[u8; 32], _> = test.key.as_slice().try_into();
            let nonce: Result<[u8; 12], _> = test.nonce.as_slice().try_into();
            let (Ok(key), Ok(nonce)) = (key, nonce) else {
                assert_eq!(test.result, TestResult::Invalid, "tc {}", test.tc_id);
                continue;
            };
            assert_eq!(group.tag_size, 128);
            through_api += 1;
            let sealed = [test.ct.as_slice(), test.tag.as_slice()].concat();
            let opened = aead_open(&key, &nonce, &test.aad, &sealed);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(
                        opened.as_deref(),
                        Ok(test.pt.as_slice()),
                        "tc {}",
                        test.tc_id
                    );
                    assert_eq!(aead_seal(&key, &nonce, &test.aad, &test.pt), sealed);
                }
                TestResult::Invalid => assert!(opened.is_err(), "tc {}", test.tc_id),
            }
        }
    }
    assert!(through_api > 0);
    assert_eq!(checked, set.number_of_tests);
}

/// HKDF-SHA256 through `kdf::hkdf_sha256::<N>` for every output length the
/// vectors use. The one "invalid" length (8161 > 255 × 32) cannot be a
/// constant our code would choose; it is checked against the `hkdf` crate
/// directly, which must refuse it.
#[test]
fn hkdf_sha256_vectors() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            macro_rules! ours {
                ($($n:literal),*) => {
                    match test.size {
                        $($n => Some(hkdf_sha256::<$n>(&test.salt, &test.ikm, &test.info).to_vec()),)*
                        _ => None,
                    }
                };
            }
            let okm = ours!(20, 32, 42, 56, 64, 80, 82, 128, 8160);
            match (test.result, okm) {
                (TestResult::Valid | TestResult::Acceptable, Some(okm)) => {
                    assert_eq!(okm, test.okm.as_slice(), "tc {}", test.tc_id);
                }
                (TestResult::Invalid, None) => {
                    let salt = (!test.salt.is_empty()).then_some(test.salt.as_slice());
                    let hk = hkdf::Hkdf::<sha2::Sha256>::new(salt, &test.ikm);
                    let mut out = vec![0u8; test.size];
                    assert!(
                        hk.expand(&test.info, &mut out).is_err(),
                        "tc {}",
                        test.tc_id
                    );
                }
                (result, okm) => panic!(
                    "tc {}: size {} ({result:?}) not covered (ours: {})",
                    test.tc_id,
                    test.size,
                    okm.is_some()
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 0);
    assert_eq!(checked, set.number_of_tests);
}

/// HMAC-SHA256 through `kdf::hmac_sha256` (always the full 32-byte tag).
/// Groups with 128-bit tags compare the tag's prefix; an "invalid" vector's
/// tag must differ from ours.
#[test]
fn hmac_sha256_vectors() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256).unwrap();
    let mut checked = 0;
    let mut full_length = 0;
    for group in &set.test_groups {
        let tag_len = group.tag_size / 8;
        for test in &group.tests {
            let tag = hmac_sha256(&test.key, &test.msg);
            let ours = tag.get(..tag_len).unwrap();
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(ours, test.tag.as_slice(), "tc {}", test.tc_id);
                }
                TestResult::Invalid => assert_ne!(ours, test.tag.as_slice(), "tc {}", test.tc_id),
            }
            if tag_len == 32 {
                full_length += 1;
            }
            checked += 1;
        }
    }
    assert!(full_length > 0);
    assert_eq!(checked, set.number_of_tests);
}
