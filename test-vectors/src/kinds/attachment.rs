//! Kind `attachment`: segmented STREAM encryption of a file (SPEC.md §7).
//!
//! Input: the 32-byte attachment key and the plaintext (given as a length and
//! a repeating byte pattern, so multi-segment files stay small in JSON).
//! Output: the SHA-256 of the whole ciphertext (the pointer's digest), its
//! length, and the first and last 64 bytes of every segment boundary region.

use microbot_crypto::attachment::{AttachmentEncryptor, AttachmentKey, AttachmentSummary};
use microbot_crypto::labels::{ATTACHMENT_SEGMENT_LEN, TAG_LEN};
use serde_json::Value;

use crate::hexbytes::{array, bytes, hex, object, uint};
use crate::replay_rng::RecordingRng;
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str =
    "Attachment STREAM encryption: digest, length and segment boundaries (SPEC.md §7)";

fn plaintext(input: &Value) -> Result<Vec<u8>, VectorError> {
    let pattern = bytes(input, "pattern")?;
    let length = usize::try_from(uint(input, "length")?)
        .map_err(|_| VectorError::BadField("length".into()))?;
    if pattern.is_empty() && length > 0 {
        return Err(VectorError::BadField("pattern".into()));
    }
    Ok(pattern.iter().copied().cycle().take(length).collect())
}

/// The ciphertext of `key` over `pattern` repeated to `length` bytes, and its summary.
fn encrypt(input: &Value) -> Result<(Vec<u8>, AttachmentSummary), VectorError> {
    let key = AttachmentKey::from_bytes(&array::<32>(input, "key")?)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    let plaintext = plaintext(input)?;
    let mut encryptor = AttachmentEncryptor::with_key(&key);
    let mut ciphertext = Vec::new();
    encryptor
        .update(&plaintext, &mut ciphertext)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    let summary = encryptor
        .finish(&mut ciphertext)
        .map_err(|e| VectorError::Failed(e.to_string()))?;
    Ok((ciphertext, summary))
}

/// The ciphertext of an `attachment`-style input (also used by kind `failure`).
pub(super) fn encrypt_pattern(input: &Value) -> Result<Vec<u8>, VectorError> {
    encrypt(input).map(|(ciphertext, _)| ciphertext)
}

/// Encrypts and summarises.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    let (ciphertext, summary) = encrypt(input)?;
    let sealed_segment = ATTACHMENT_SEGMENT_LEN + TAG_LEN;
    let segments: Vec<Value> = ciphertext
        .chunks(sealed_segment)
        .map(|segment| {
            let head = &segment[..segment.len().min(32)];
            let tail = &segment[segment.len().saturating_sub(TAG_LEN)..];
            object([
                ("length", Value::from(segment.len())),
                ("first_32", hex(head)),
                ("tag", hex(tail)),
            ])
        })
        .collect();
    Ok(object([
        ("ciphertext_length", Value::from(summary.ciphertext_len)),
        ("digest", hex(summary.digest.to_bytes())),
        ("segments", Value::from(segments)),
    ]))
}

/// Empty, one byte, one exact segment, and a few segments plus a tail.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let mut rng = RecordingRng::from_seed_byte(0x50);
    let cases = [
        ("empty", 0usize),
        ("one-byte", 1),
        ("one-full-segment", ATTACHMENT_SEGMENT_LEN),
        (
            "three-segments-and-a-tail",
            3 * ATTACHMENT_SEGMENT_LEN + 100,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, length)| {
            let _ = AttachmentKey::generate(&mut rng);
            let key = rng.take_draws().concat();
            let input = object([
                ("key", hex(key)),
                ("pattern", hex(b"microbot attachment ")),
                ("length", Value::from(length)),
            ]);
            Ok(Vector {
                name: name.into(),
                output: compute(&input)?,
                input,
            })
        })
        .collect()
}
