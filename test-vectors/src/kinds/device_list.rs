//! Kind `device_list`: the account's device list signed by its identity
//! key (SPEC.md §20).
//!
//! `op = "sign"`: identity seed, username, version, timestamp and device
//! ids (any order) → the identity key, the body and the signed list.
//! `op = "verify"`: identity key, the username the list is expected to
//! name, and signed bytes → `error` ("" or the refusal's name, in the
//! order SPEC.md §20 checks) and the list's fields (zero / empty on error).

use microbot_crypto::device_list::{DeviceList, DeviceListError, SignedDeviceList};
use microbot_crypto::labels::DEVICE_LIST_LABEL;
use microbot_crypto::{IdentityKey, IdentityKeyPair};
use serde_json::{Value, json};

use crate::hexbytes::{array, bytes, hex, object, string, uint};
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "Signed device lists: the fixed layout signed by the identity key, and every refusal (SPEC.md §20)";

/// Signs or verifies, as `input.op` says.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    match string(input, "op")? {
        "sign" => {
            let identity = IdentityKeyPair::from_seed(&array::<32>(input, "identity_seed")?);
            let ids = input
                .get("device_ids")
                .and_then(Value::as_array)
                .ok_or_else(|| VectorError::MissingField("device_ids".into()))?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| VectorError::BadField("device_ids".into()))
                })
                .collect::<Result<Vec<u64>, _>>()?;
            let list = DeviceList::new(
                string(input, "username")?,
                uint(input, "version")?,
                uint(input, "timestamp_ms")?,
                &ids,
            )
            .map_err(|e| VectorError::Failed(e.to_string()))?;
            let body = list.to_body();
            let signed = list.sign(&identity);
            Ok(object([
                ("identity_key", hex(identity.public().to_bytes())),
                ("body", hex(body)),
                ("signed_device_list", hex(signed.as_bytes())),
            ]))
        }
        "verify" => {
            let identity = IdentityKey::from_bytes(&bytes(input, "identity_key")?)
                .map_err(|_| VectorError::BadField("identity_key".into()))?;
            let signed = bytes(input, "signed_device_list")?;
            let verified =
                SignedDeviceList::verify_for(&signed, &identity, string(input, "username")?);
            Ok(match verified {
                Ok(list) => object([
                    ("error", json!("")),
                    ("version", json!(list.list().version())),
                    ("timestamp_ms", json!(list.list().timestamp_ms())),
                    ("device_ids", json!(list.list().device_ids())),
                ]),
                Err(error) => object([
                    ("error", json!(error_name(error))),
                    ("version", json!(0)),
                    ("timestamp_ms", json!(0)),
                    ("device_ids", json!([])),
                ]),
            })
        }
        _ => Err(VectorError::BadField("op".into())),
    }
}

/// The refusal's name as SPEC.md §20 writes it.
fn error_name(error: DeviceListError) -> &'static str {
    match error {
        DeviceListError::Truncated => "Truncated",
        DeviceListError::TrailingBytes => "TrailingBytes",
        DeviceListError::UnsupportedVersion => "UnsupportedVersion",
        DeviceListError::InvalidUsername => "InvalidUsername",
        DeviceListError::ZeroVersion => "ZeroVersion",
        DeviceListError::DeviceCount => "DeviceCount",
        DeviceListError::NotAscending => "NotAscending",
        DeviceListError::BadSignature => "BadSignature",
        DeviceListError::WrongUsername => "WrongUsername",
    }
}

/// A body in the §20 layout with any field values (also invalid ones).
fn raw_body(username: &[u8], version: u64, timestamp_ms: u64, ids: &[u64]) -> Vec<u8> {
    let mut body = vec![0x01, u8::try_from(username.len()).unwrap_or(u8::MAX)];
    body.extend_from_slice(username);
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&timestamp_ms.to_be_bytes());
    body.extend_from_slice(&u16::try_from(ids.len()).unwrap_or(u16::MAX).to_be_bytes());
    for id in ids {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body
}

/// `body ‖ signature` with a valid signature over any body.
fn sign_raw(identity: &IdentityKeyPair, body: &[u8]) -> Vec<u8> {
    let mut message = DEVICE_LIST_LABEL.to_vec();
    message.extend_from_slice(body);
    let mut out = body.to_vec();
    out.extend_from_slice(&identity.sign(&message));
    out
}

fn sign_vector(
    name: &str,
    seed: u8,
    username: &str,
    version: u64,
    ids: &[u64],
) -> Result<Vector, VectorError> {
    let input = object([
        ("op", json!("sign")),
        ("identity_seed", hex([seed; 32])),
        ("username", json!(username)),
        ("version", json!(version)),
        ("timestamp_ms", json!(1_767_225_600_000u64 + version)),
        ("device_ids", json!(ids)),
    ]);
    Ok(Vector {
        name: name.into(),
        output: compute(&input)?,
        input,
    })
}

fn verify_vector(
    name: &str,
    identity: &IdentityKeyPair,
    username: &str,
    signed: &[u8],
) -> Result<Vector, VectorError> {
    let input = object([
        ("op", json!("verify")),
        ("identity_key", hex(identity.public().to_bytes())),
        ("username", json!(username)),
        ("signed_device_list", hex(signed)),
    ]);
    Ok(Vector {
        name: name.into(),
        output: compute(&input)?,
        input,
    })
}

/// Signing cases, then a valid list and every refusal.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let alice = IdentityKeyPair::from_seed(&[0xa1; 32]);
    let other = IdentityKeyPair::from_seed(&[0x0b; 32]);
    let good_body = raw_body(b"alice", 3, 1_767_225_600_000, &[1, 7, 42]);
    let good = sign_raw(&alice, &good_body);
    let mut bad_signature = good.clone();
    if let Some(last) = bad_signature.last_mut() {
        *last ^= 0x80;
    }
    // s + ℓ: the same signature with a non-canonical scalar (refused by
    // strict verification).
    let mut non_canonical = good.clone();
    let s_at = good.len() - 32;
    let ell: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(non_canonical[s_at + i]) + u16::from(ell[i]) + carry;
        non_canonical[s_at + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_version = good_body.clone();
    wrong_version[0] = 0x02;
    let unsorted = raw_body(b"alice", 3, 0, &[7, 1]);
    let repeated = raw_body(b"alice", 3, 0, &[7, 7]);
    let zero = raw_body(b"alice", 0, 0, &[1]);
    let empty = raw_body(b"alice", 3, 0, &[]);
    let too_many: Vec<u64> = (1..=101).collect();
    let too_many = raw_body(b"alice", 3, 0, &too_many);
    let upper = raw_body(b"Alice", 3, 0, &[1]);
    Ok(vec![
        sign_vector("sign-registration", 0xa1, "alice", 1, &[1])?,
        sign_vector("sign-three-devices-sorted", 0xa1, "alice", 2, &[42, 1, 7])?,
        sign_vector(
            "sign-large-values",
            0x5e,
            "bob.smith-2_x",
            4_294_967_296,
            &[9_007_199_254_740_991, 65_536],
        )?,
        verify_vector("verify-valid", &alice, "alice", &good)?,
        verify_vector("verify-other-key", &other, "alice", &good)?,
        verify_vector(
            "verify-forged-by-other-key",
            &alice,
            "alice",
            &sign_raw(&other, &good_body),
        )?,
        verify_vector("verify-flipped-signature", &alice, "alice", &bad_signature)?,
        verify_vector("verify-non-canonical-s", &alice, "alice", &non_canonical)?,
        verify_vector("verify-wrong-username", &alice, "bob", &good)?,
        verify_vector(
            "verify-truncated-signature",
            &alice,
            "alice",
            &good[..good.len() - 1],
        )?,
        verify_vector("verify-truncated-body", &alice, "alice", &good[..10])?,
        verify_vector("verify-empty", &alice, "alice", &[])?,
        verify_vector("verify-trailing-byte", &alice, "alice", &trailing)?,
        verify_vector(
            "verify-unsupported-version",
            &alice,
            "alice",
            &sign_raw(&alice, &wrong_version),
        )?,
        verify_vector(
            "verify-unsorted-ids",
            &alice,
            "alice",
            &sign_raw(&alice, &unsorted),
        )?,
        verify_vector(
            "verify-repeated-id",
            &alice,
            "alice",
            &sign_raw(&alice, &repeated),
        )?,
        verify_vector(
            "verify-zero-version",
            &alice,
            "alice",
            &sign_raw(&alice, &zero),
        )?,
        verify_vector(
            "verify-no-device",
            &alice,
            "alice",
            &sign_raw(&alice, &empty),
        )?,
        verify_vector(
            "verify-too-many-devices",
            &alice,
            "alice",
            &sign_raw(&alice, &too_many),
        )?,
        verify_vector(
            "verify-invalid-username",
            &alice,
            "Alice",
            &sign_raw(&alice, &upper),
        )?,
    ])
}
