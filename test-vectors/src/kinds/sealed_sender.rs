//! Kind `sealed_sender`: sender certificates and sealed-sender envelopes
//! (SPEC.md §19).
//!
//! Input: the server's certificate key (seed and id), the certificate's
//! fields, the sender's and recipient's identity seeds, the ephemeral
//! X25519 secret, the content type and inner message, and what the
//! recipient opens with (the server public key it trusts, its clock), and
//! the recipient's profile key.
//! Output: the server public key, the certificate, the envelope, the
//! recipient's access key derived from its profile key (§19.7), and what
//! the recipient gets from opening it: the certified sender and message, or
//! the refusal (`Expired`, `BadSignature`, `UnknownServerKey`).

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::sealed_sender::certificate::{
    CertificateError, ServerPublicKey, ServerSigningKey,
};
use microbot_crypto::sealed_sender::{
    ContentType, SealedSenderError, access_key, open, seal_with_ephemeral,
};
use serde_json::Value;

use crate::hexbytes::{array, bytes, hex, object, string, uint};
use crate::replay_rng::RecordingRng;
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "Sealed sender: server-signed sender certificates and the two-layer sealed envelope (X25519 + HKDF + ChaCha20-Poly1305, SPEC.md §19)";

fn failed(e: impl ToString) -> VectorError {
    VectorError::Failed(e.to_string())
}

fn u32_field(input: &Value, name: &str) -> Result<u32, VectorError> {
    u32::try_from(uint(input, name)?).map_err(|_| failed(format!("{name} exceeds u32")))
}

/// The refusal's name as SPEC §19.5 writes it.
fn error_name(error: SealedSenderError) -> &'static str {
    match error {
        SealedSenderError::Malformed => "Malformed",
        SealedSenderError::WeakKey => "WeakKey",
        SealedSenderError::AuthenticationFailed => "AuthenticationFailed",
        SealedSenderError::UnknownContentType(_) => "UnknownContentType",
        SealedSenderError::SenderMismatch => "SenderMismatch",
        SealedSenderError::Certificate(CertificateError::Expired { .. }) => "Expired",
        SealedSenderError::Certificate(CertificateError::BadSignature) => "BadSignature",
        SealedSenderError::Certificate(CertificateError::UnknownServerKey(_)) => "UnknownServerKey",
        SealedSenderError::Certificate(_) => "Malformed",
    }
}

/// Issues the certificate, seals, then opens as the recipient.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let server = ServerSigningKey::from_seed(
        u32_field(input, "server_key_id")?,
        &array::<32>(input, "server_seed")?,
    );
    let sender = IdentityKeyPair::from_seed(&array::<32>(input, "sender_identity_seed")?);
    let recipient = IdentityKeyPair::from_seed(&array::<32>(input, "recipient_identity_seed")?);
    let certificate = server
        .issue(
            string(input, "username")?,
            uint(input, "device_id")?,
            sender.public(),
            uint(input, "expires_at_ms")?,
        )
        .map_err(failed)?;
    let type_byte = u8::try_from(uint(input, "content_type")?).map_err(failed)?;
    let content_type =
        ContentType::from_byte(type_byte).ok_or_else(|| failed("unknown content_type"))?;
    let message = bytes(input, "message")?;
    let sealed = seal_with_ephemeral(
        &array::<32>(input, "ephemeral_secret")?,
        &sender,
        &certificate,
        recipient.public(),
        content_type,
        &message,
    )
    .map_err(failed)?;
    let trusted = ServerPublicKey::from_bytes(
        u32_field(input, "trusted_server_key_id")?,
        &bytes(input, "trusted_server_public")?,
    )
    .map_err(failed)?;
    let opened = match open(&recipient, &trusted, uint(input, "now_ms")?, &sealed) {
        Ok(unsealed) => {
            if unsealed.message != message || unsealed.content_type != content_type {
                return Err(failed("the envelope opens to another message"));
            }
            object([
                (
                    "username",
                    Value::from(unsealed.certificate.username.clone()),
                ),
                ("device_id", Value::from(unsealed.certificate.device_id)),
                (
                    "identity_key",
                    hex(unsealed.certificate.identity_key.to_bytes()),
                ),
                ("content_type", Value::from(unsealed.content_type.to_byte())),
                ("message", hex(&unsealed.message)),
            ])
        }
        Err(e) => object([("error", Value::from(error_name(e)))]),
    };
    let access = access_key(&array::<32>(input, "profile_key")?);
    Ok(object([
        ("server_public", hex(server.public().to_bytes())),
        ("certificate", hex(certificate.as_bytes())),
        ("sealed", hex(&sealed)),
        ("access_key", hex(access)),
        ("opened", opened),
    ]))
}

/// Opened envelopes of both content types and an empty message, then an
/// expired certificate, a forged one (another key with the trusted id) and
/// one signed by a key id the recipient does not know.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    const EXPIRES: u64 = 1_800_000_000_000;
    let mut rng = RecordingRng::from_seed_byte(0x53);
    let cases: [(&str, u8, &[u8], u64, &str); 6] = [
        (
            "session-message",
            1,
            b"\x01ratchet message bytes",
            EXPIRES - 1,
            "ok",
        ),
        (
            "sender-key-message",
            2,
            b"\x01sender key message",
            EXPIRES,
            "ok",
        ),
        ("empty-message", 1, b"", EXPIRES - 86_400_000, "ok"),
        ("expired-certificate", 1, b"late", EXPIRES + 1, "ok"),
        ("forged-certificate", 1, b"forged", EXPIRES - 1, "forged"),
        (
            "unknown-server-key",
            2,
            b"other key",
            EXPIRES - 1,
            "other-id",
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, content_type, message, now_ms, trust))| {
            // Draws 0..=3: server seed, sender seed, recipient seed, e.
            let server = ServerSigningKey::generate(7, &mut rng);
            IdentityKeyPair::generate(&mut rng);
            IdentityKeyPair::generate(&mut rng);
            let mut ephemeral = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut ephemeral);
            let (trusted_id, trusted) = match trust {
                "forged" => (7, ServerSigningKey::generate(7, &mut rng).public()),
                "other-id" => (8, ServerSigningKey::generate(8, &mut rng).public()),
                _ => (7, server.public()),
            };
            // Last draw: the recipient's profile key.
            let mut profile_key = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut profile_key);
            let draws = rng.take_draws();
            let input = object([
                ("server_seed", hex(&draws[0])),
                ("server_key_id", Value::from(7)),
                ("username", Value::from(format!("sender{i}"))),
                ("device_id", Value::from(u64::try_from(i).unwrap_or(0) + 1)),
                ("expires_at_ms", Value::from(EXPIRES)),
                ("sender_identity_seed", hex(&draws[1])),
                ("recipient_identity_seed", hex(&draws[2])),
                ("ephemeral_secret", hex(&draws[3])),
                ("content_type", Value::from(content_type)),
                ("message", hex(message)),
                ("trusted_server_key_id", Value::from(trusted_id)),
                ("trusted_server_public", hex(trusted.to_bytes())),
                ("now_ms", Value::from(now_ms)),
                ("profile_key", hex(profile_key)),
            ]);
            Ok(Vector {
                name: name.into(),
                output: compute(&input)?,
                input,
            })
        })
        .collect()
}
