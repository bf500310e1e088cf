//! Kind `failure`: inputs every implementation MUST refuse, with the error
//! the reference implementation names (SPEC.md §17.1) and, for stateful
//! operations, the persisted state afterwards, which MUST equal the state
//! before (SPEC.md §5.8, §6.6).
//!
//! `op` and its input:
//! - `ratchet_decrypt`: `state` (RatchetState, §5.7), `message`, `draws` (what
//!   the receiver's RNG serves: a DH step draws its new ratchet key before the
//!   AEAD refuses). Output `error`, `state`.
//! - `sender_key_decrypt`: `state` (SenderKeyRecordState, §6.7), `message`.
//!   Output `error`, `state`.
//! - `attachment_decrypt`: `key`, the plaintext as `pattern` repeated to
//!   `length` bytes (encrypted as in kind `attachment`), `keep`: how many
//!   leading ciphertext bytes the receiver gets. Output `error`.
//! - `prekey_bundle`: `identity_key`, `signed_prekey` {id, public_key,
//!   signature}, `kem_prekey` {id, public_key, signature} or absent. Output
//!   `error` of the initiator's bundle checks (§4.1), "" when accepted.
//! - `prekey_message`: Bob's `identity_state` (§9.3) and `prekeys_state`
//!   (§9.1), and an initial `message` (§4.3). Output `error`, `prekeys_state`.
//!
//! The error is the variant name of SPEC.md's tables, the innermost one when
//! errors nest (`Handshake(InvalidKey(BadSignature))` is `BadSignature`).

use microbot_crypto::attachment::{AttachmentDecryptor, AttachmentKey};
use microbot_crypto::prekeys::{KemPreKeyPublic, LocalPreKeys, PreKeyBundle, SignedPreKeyPublic};
use microbot_crypto::ratchet::RatchetSession;
use microbot_crypto::sender_key::SenderKeyRecord;
use microbot_crypto::session::Session;
use microbot_crypto::{IdentityKey, IdentityKeyPair};
use serde_json::Value;

use crate::hexbytes::{array, byte_list, bytes, hex, object, string, uint};
use crate::replay_rng::ReplayRng;
use crate::vector::VectorError;

pub use super::failure_cases::generate;

/// What the file says about itself.
pub const DESCRIPTION: &str = "Refused inputs and the error they get, state unchanged: tampered header, replay, too-far skip, bad signature, stripped KEM prekey, truncated attachment (SPEC.md §4, §5.8, §6.6, §7.4)";

fn failed(e: impl std::fmt::Display) -> VectorError {
    VectorError::Failed(e.to_string())
}

/// The innermost variant name of an error's `Debug` form.
pub fn error_name(error: &impl std::fmt::Debug) -> String {
    const WRAPPERS: [&str; 4] = ["Handshake", "Decrypt", "InvalidKey", "InvalidRatchetKey"];
    let debug = format!("{error:?}");
    let mut rest = debug.as_str();
    loop {
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        match after.strip_prefix('(') {
            Some(inner) if WRAPPERS.contains(&name) => rest = inner,
            _ => return name.to_owned(),
        }
    }
}

fn outcome<T>(result: Result<T, impl std::fmt::Debug>) -> Value {
    Value::from(result.err().map(|e| error_name(&e)).unwrap_or_default())
}

/// Runs the operation `op` names and reports its error.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    match string(input, "op")? {
        "ratchet_decrypt" => {
            let mut session =
                RatchetSession::from_bytes(&bytes(input, "state")?).map_err(failed)?;
            let mut rng = ReplayRng::new(byte_list(input, "draws")?);
            let result = session.decrypt(&mut rng, &bytes(input, "message")?);
            rng.finish().map_err(VectorError::Failed)?;
            Ok(object([
                ("error", outcome(result)),
                ("state", hex(&*session.to_bytes())),
            ]))
        }
        "sender_key_decrypt" => {
            let mut record =
                SenderKeyRecord::from_bytes(&bytes(input, "state")?).map_err(failed)?;
            let result = record.decrypt(&bytes(input, "message")?);
            Ok(object([
                ("error", outcome(result)),
                ("state", hex(&*record.to_bytes())),
            ]))
        }
        "attachment_decrypt" => {
            let ciphertext = super::attachment::encrypt_pattern(input)?;
            let keep = usize::try_from(uint(input, "keep")?)
                .ok()
                .filter(|keep| *keep <= ciphertext.len())
                .ok_or_else(|| VectorError::BadField("keep".into()))?;
            let key = AttachmentKey::from_bytes(&array::<32>(input, "key")?).map_err(failed)?;
            let mut decryptor = AttachmentDecryptor::new(&key);
            let mut out = Vec::new();
            let result = decryptor
                .update(&ciphertext[..keep], &mut out)
                .and_then(|()| decryptor.finish(&mut out));
            Ok(object([("error", outcome(result))]))
        }
        "prekey_bundle" => {
            let bundle = bundle(input)?;
            Ok(object([("error", outcome(bundle.verify()))]))
        }
        "prekey_message" => {
            let identity =
                IdentityKeyPair::from_bytes(&bytes(input, "identity_state")?).map_err(failed)?;
            let mut prekeys = LocalPreKeys::from_bytes(&identity, &bytes(input, "prekeys_state")?)
                .map_err(failed)?;
            // A refused message draws nothing that matters; serve no draws.
            let mut rng = ReplayRng::new(Vec::new());
            let result =
                Session::accept(&mut rng, &identity, &mut prekeys, &bytes(input, "message")?);
            Ok(object([
                ("error", outcome(result.map(|_| ()))),
                ("prekeys_state", hex(&*prekeys.to_bytes())),
            ]))
        }
        _ => Err(VectorError::BadField("op".into())),
    }
}

fn bundle(input: &Value) -> Result<PreKeyBundle, VectorError> {
    let identity = IdentityKey::from_bytes(&bytes(input, "identity_key")?).map_err(failed)?;
    let signed = input
        .get("signed_prekey")
        .ok_or_else(|| VectorError::MissingField("signed_prekey".into()))?;
    let id = |object: &Value| {
        u32::try_from(uint(object, "id")?).map_err(|_| VectorError::BadField("id".into()))
    };
    let signed_prekey = SignedPreKeyPublic {
        id: id(signed)?,
        public_key: array(signed, "public_key")?,
        signature: array(signed, "signature")?,
    };
    let kem_prekey = input
        .get("kem_prekey")
        .map(|kem| {
            Ok::<_, VectorError>(KemPreKeyPublic {
                id: id(kem)?,
                public_key: bytes(kem, "public_key")?,
                signature: array(kem, "signature")?,
            })
        })
        .transpose()?;
    Ok(PreKeyBundle {
        identity,
        signed_prekey,
        one_time_prekey: None,
        kem_prekey,
    })
}

/// Encodes `op`'s input, so the generator and `compute` agree on names.
pub(super) fn input<const N: usize>(op: &str, fields: [(&str, Value); N]) -> Value {
    let mut value = object(fields);
    value["op"] = Value::from(op);
    value
}

/// A prekey public part as the `prekey_bundle` input spells it.
pub(super) fn key_object(id: u32, public_key: &[u8], signature: &[u8]) -> Value {
    object([
        ("id", Value::from(id)),
        ("public_key", hex(public_key)),
        ("signature", hex(signature)),
    ])
}
