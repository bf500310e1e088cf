//! Attachment targets (SPEC.md §7): `attachment_decrypt` (arbitrary bytes
//! under an arbitrary key, arbitrary chunking) and `attachment_mutated`
//! (real ciphertexts, mutated, fed in arbitrary chunks).
//!
//! Invariants: the decryptor never panics; after an error it refuses all
//! further input; a ciphertext it accepts is exactly the encryption of what
//! it returned (STREAM is deterministic given the key), with consistent
//! lengths and digest; a mutated ciphertext is refused, and whatever
//! plaintext was released before the refusal is a prefix of the real one.

use arbitrary::{Arbitrary, Unstructured};
use microbot_crypto::attachment::{
    AttachmentDecryptError, AttachmentDecryptor, AttachmentDigest, AttachmentKey,
    AttachmentSummary, ciphertext_len,
};

use crate::fixtures;
use crate::mutate::{Mutation, apply_all};

/// Feeds `ciphertext` in chunks of the given lengths (cycled; a 0 feeds an
/// empty chunk, then one byte), then finishes. Returns the released
/// plaintext and the outcome.
fn decrypt_chunked(
    key: &AttachmentKey,
    ciphertext: &[u8],
    chunks: &[u16],
    expected_digest: Option<&AttachmentDigest>,
) -> (Vec<u8>, Result<AttachmentSummary, AttachmentDecryptError>) {
    let mut decryptor = AttachmentDecryptor::new(key);
    let mut out = Vec::new();
    let mut rest = ciphertext;
    let mut lengths = chunks.iter().cycle();
    while !rest.is_empty() {
        let len = match lengths.next() {
            Some(&0) => {
                if let Err(error) = decryptor.update(&[], &mut out) {
                    return (out, Err(error));
                }
                1
            }
            Some(&len) => usize::from(len),
            None => rest.len(),
        };
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        if let Err(error) = decryptor.update(chunk, &mut out) {
            assert_eq!(
                decryptor.update(b"x", &mut out),
                Err(AttachmentDecryptError::AlreadyFailed)
            );
            let mut ignored = Vec::new();
            assert_eq!(
                decryptor.finish(&mut ignored).err(),
                Some(AttachmentDecryptError::AlreadyFailed)
            );
            return (out, Err(error));
        }
    }
    let result = match expected_digest {
        Some(digest) => decryptor.finish_verified(&mut out, digest),
        None => decryptor.finish(&mut out),
    };
    (out, result)
}

/// Checks a successful decryption against a fresh encryption of its output.
fn check_accepted(
    key: &AttachmentKey,
    ciphertext: &[u8],
    plaintext: &[u8],
    summary: &AttachmentSummary,
) {
    assert_eq!(summary.plaintext_len, plaintext.len() as u64);
    assert_eq!(summary.ciphertext_len, ciphertext.len() as u64);
    assert_eq!(
        ciphertext_len(summary.plaintext_len),
        Some(summary.ciphertext_len)
    );
    let (again, digest) = fixtures::encrypt_attachment(key, plaintext);
    assert!(
        again == ciphertext,
        "accepted ciphertext is not the encryption of its plaintext"
    );
    assert_eq!(digest, summary.digest);
}

/// Target `attachment_decrypt`. Input layout:
/// `chunk length (u16 LE, 0 = all at once) ‖ key (32) ‖ ciphertext`.
pub fn attachment_decrypt(data: &[u8]) {
    let Some((&[lo, hi], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Some((key, ciphertext)) = rest.split_first_chunk::<32>() else {
        return;
    };
    let Ok(key) = AttachmentKey::from_bytes(key) else {
        return;
    };
    let chunk = u16::from_le_bytes([lo, hi]);
    let chunks: &[u16] = if chunk == 0 { &[] } else { &[chunk] };
    let (plaintext, result) = decrypt_chunked(&key, ciphertext, chunks, None);
    if let Ok(summary) = result {
        check_accepted(&key, ciphertext, &plaintext, &summary);
    }
}

/// Input of [`attachment_mutated`].
#[derive(Debug, Arbitrary)]
struct MutatedInput {
    /// Which fixture attachment (modulo their number).
    index: u8,
    /// Chunk lengths, cycled.
    chunks: Vec<u16>,
    /// Whether to finish with the pointer's digest.
    verify: bool,
    /// Whether that digest is altered (only with `verify`).
    wrong_digest: bool,
    /// What the attacker does to the ciphertext (often nothing).
    mutations: Vec<Mutation>,
}

/// Target `attachment_mutated`: the fixture attachments (empty, short,
/// around segment boundaries), mutated or not, in arbitrary chunks.
pub fn attachment_mutated(data: &[u8]) {
    let Ok(input) = MutatedInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let attachments = fixtures::attachments();
    let Some(attachment) = attachments.get(usize::from(input.index) % attachments.len()) else {
        return;
    };
    let key = fixtures::attachment_key();
    let ciphertext = apply_all(&attachment.ciphertext, &input.mutations);
    let genuine = ciphertext == attachment.ciphertext;
    let mut digest_bytes = attachment.digest.to_bytes();
    if input.wrong_digest
        && let Some(byte) = digest_bytes.first_mut()
    {
        *byte ^= 1;
    }
    let Ok(digest) = AttachmentDigest::from_bytes(&digest_bytes) else {
        return;
    };
    let expected_digest = input.verify.then_some(&digest);
    let (plaintext, result) = decrypt_chunked(&key, &ciphertext, &input.chunks, expected_digest);
    assert!(
        attachment.plaintext.starts_with(&plaintext),
        "released plaintext is not a prefix of the real one"
    );
    match result {
        Ok(summary) => {
            assert!(genuine, "a mutated attachment decrypted");
            assert!(
                !(input.verify && input.wrong_digest),
                "wrong digest accepted"
            );
            assert_eq!(plaintext, attachment.plaintext);
            assert_eq!(summary.digest, attachment.digest);
            check_accepted(&key, &ciphertext, &plaintext, &summary);
        }
        Err(error) => {
            let digest_refused = input.verify
                && input.wrong_digest
                && error == AttachmentDecryptError::DigestMismatch;
            assert!(
                !genuine || digest_refused,
                "genuine attachment refused: {error}"
            );
        }
    }
}
