//! Attachment encryption (SPEC.md §7): the STREAM construction of Hoang,
//! Reyhanitabar, Rogaway and Vizár over ChaCha20-Poly1305, so files of any
//! size are encrypted and decrypted in constant memory.
//!
//! A fresh random [`AttachmentKey`] per file; HKDF-SHA256 (no salt, info
//! [`ATTACHMENT_INFO`]) expands it to a 32-byte AEAD key and a 7-byte nonce
//! prefix. The plaintext is cut into [`ATTACHMENT_SEGMENT_LEN`]-byte segments;
//! segment `i` is sealed under the nonce `prefix ‖ i (u32 BE) ‖ last flag`,
//! with empty associated data. The ciphertext is the sealed segments back to
//! back, with no header. Truncation, reordering, swaps between files and
//! trailing data are all detected; the SHA-256 of the whole ciphertext
//! ([`AttachmentDigest`]) is computed while streaming so a downloaded file can
//! be checked against its pointer.
//!
//! Invariants: the final segment is the only one with flag 0x01; an empty
//! final segment is valid only as segment 0 (the empty file). Plaintext that
//! [`AttachmentDecryptor::update`] released is authentic segment by segment,
//! but the file is complete and authentic only once
//! [`AttachmentDecryptor::finish`] returns `Ok`.
//!
//! This module does not own the pointer message (the protocol crate does),
//! uploads, downloads or files: callers move the bytes.

use std::fmt;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::kdf::{aead_open, aead_open_in_place, aead_seal_in_place, hkdf_sha256};
use crate::labels::{
    ATTACHMENT_INFO, ATTACHMENT_NONCE_PREFIX_LEN, ATTACHMENT_SEGMENT_LEN, KEY_LEN, NONCE_LEN,
    TAG_LEN,
};

/// Ciphertext bytes of a full segment.
const SEALED_SEGMENT_LEN: usize = ATTACHMENT_SEGMENT_LEN + TAG_LEN;
/// Segments a file may have: the counter is 32 bits.
const MAX_SEGMENTS: u64 = 1 << 32;

/// Length of the SHA-256 ciphertext digest.
pub const DIGEST_LEN: usize = 32;

/// The per-file secret: 32 random bytes, carried in the attachment pointer.
/// Zeroized on drop, never printed.
#[derive(Clone)]
pub struct AttachmentKey(Zeroizing<[u8; KEY_LEN]>);

impl AttachmentKey {
    /// Draws a fresh key (32 bytes from `rng`).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(key.as_mut());
        Self(key)
    }

    /// Parses a 32-byte key from a pointer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AttachmentKeyError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| AttachmentKeyError {
            actual: bytes.len(),
        })?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// The key bytes, to be placed in the pointer.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachmentKey(<redacted>)")
    }
}

/// An attachment key was not 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attachment key must be 32 bytes, got {actual}")]
pub struct AttachmentKeyError {
    /// Length that was given.
    pub actual: usize,
}

/// SHA-256 of an attachment's complete ciphertext. Compared in constant time.
#[derive(Clone, Copy)]
pub struct AttachmentDigest([u8; DIGEST_LEN]);

impl AttachmentDigest {
    /// Parses a 32-byte digest from a pointer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AttachmentDigestError> {
        let array: [u8; DIGEST_LEN] = bytes.try_into().map_err(|_| AttachmentDigestError {
            actual: bytes.len(),
        })?;
        Ok(Self(array))
    }

    /// The digest bytes.
    pub fn to_bytes(&self) -> [u8; DIGEST_LEN] {
        self.0
    }
}

impl PartialEq for AttachmentDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for AttachmentDigest {}

impl fmt::Debug for AttachmentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "AttachmentDigest({hex})")
    }
}

/// A digest was not 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attachment digest must be 32 bytes, got {actual}")]
pub struct AttachmentDigestError {
    /// Length that was given.
    pub actual: usize,
}

/// What a finished encryption or decryption saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentSummary {
    /// SHA-256 of the whole ciphertext.
    pub digest: AttachmentDigest,
    /// Plaintext bytes.
    pub plaintext_len: u64,
    /// Ciphertext bytes.
    pub ciphertext_len: u64,
}

/// Why an attachment could not be encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentEncryptError {
    /// The file needs more than 2^32 segments (256 TiB).
    #[error("attachment too large: more than 2^32 segments")]
    TooLarge,
}

/// Why an attachment ciphertext was refused. After any error the decryptor
/// refuses further input; discard all plaintext it released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentDecryptError {
    /// The ciphertext ends before its final segment.
    #[error("attachment ciphertext is truncated")]
    Truncated,
    /// More bytes follow the final segment.
    #[error("attachment ciphertext has data after its final segment")]
    TrailingData,
    /// A segment failed authentication: tampered, reordered, from another
    /// file or key, or cut inside.
    #[error("attachment segment {segment} failed authentication")]
    Corrupt {
        /// Index of the segment.
        segment: u64,
    },
    /// The ciphertext has more than 2^32 segments.
    #[error("attachment ciphertext too large: more than 2^32 segments")]
    TooLarge,
    /// The ciphertext's SHA-256 differs from the pointer's digest.
    #[error("attachment digest does not match the pointer")]
    DigestMismatch,
    /// An earlier call already failed; the stream cannot continue.
    #[error("attachment decryptor already failed")]
    AlreadyFailed,
}

/// Ciphertext length for a plaintext of `plaintext_len` bytes, or `None` if
/// the file needs more than 2^32 segments.
pub fn ciphertext_len(plaintext_len: u64) -> Option<u64> {
    let segment = ATTACHMENT_SEGMENT_LEN as u64;
    let segments = plaintext_len.div_ceil(segment).max(1);
    if segments > MAX_SEGMENTS {
        return None;
    }
    plaintext_len.checked_add(segments * TAG_LEN as u64)
}

/// The AEAD key and nonce prefix of one file.
struct SegmentCipher {
    key: Zeroizing<[u8; KEY_LEN]>,
    nonce_prefix: [u8; ATTACHMENT_NONCE_PREFIX_LEN],
}

impl SegmentCipher {
    fn new(key: &AttachmentKey) -> Self {
        let okm = hkdf_sha256::<{ KEY_LEN + ATTACHMENT_NONCE_PREFIX_LEN }>(
            &[],
            key.as_bytes(),
            ATTACHMENT_INFO,
        );
        let (aead_key, prefix) = okm.split_at(KEY_LEN);
        let mut cipher = Self {
            key: Zeroizing::new([0; KEY_LEN]),
            nonce_prefix: [0; ATTACHMENT_NONCE_PREFIX_LEN],
        };
        cipher.key.copy_from_slice(aead_key);
        cipher.nonce_prefix.copy_from_slice(prefix);
        cipher
    }

    /// `prefix (7) ‖ index (u32 BE) ‖ last (0x00 / 0x01)`.
    fn nonce(&self, index: u32, last: bool) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        let (prefix, rest) = nonce.split_at_mut(ATTACHMENT_NONCE_PREFIX_LEN);
        let (counter, flag) = rest.split_at_mut(4);
        prefix.copy_from_slice(&self.nonce_prefix);
        counter.copy_from_slice(&index.to_be_bytes());
        flag.copy_from_slice(&[u8::from(last)]);
        nonce
    }

    /// Seals segment `index` of `plaintext` straight into `out` (appended:
    /// copied in, encrypted in place, tag after it). `out`'s capacity is
    /// reserved first, so no plaintext is left behind in a freed allocation.
    fn seal_into(&self, index: u32, last: bool, plaintext: &[u8], out: &mut Vec<u8>) {
        out.reserve(plaintext.len() + TAG_LEN);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let (_, body) = out.split_at_mut(start);
        let tag = aead_seal_in_place(&self.key, &self.nonce(index, last), &[], body);
        out.extend_from_slice(&tag);
    }

    /// Opens segment `index` (`ciphertext ‖ tag`) straight into `out`
    /// (appended, decrypted in place). On failure `out` is as it was.
    fn open_into(&self, index: u32, last: bool, sealed: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(body_len) = sealed.len().checked_sub(TAG_LEN) else {
            return false;
        };
        let (body, tag) = sealed.split_at(body_len);
        let start = out.len();
        out.extend_from_slice(body);
        let (_, buffer) = out.split_at_mut(start);
        let opened =
            aead_open_in_place(&self.key, &self.nonce(index, last), &[], buffer, tag).is_ok();
        if !opened {
            // The tag is checked before decryption, so this is ciphertext;
            // wiped anyway so a refused segment never leaves anything behind.
            buffer.zeroize();
            out.truncate(start);
        }
        opened
    }

    /// Whether `sealed` authenticates as segment `index` (diagnostics only).
    fn opens(&self, index: u32, last: bool, sealed: &[u8]) -> bool {
        aead_open(&self.key, &self.nonce(index, last), &[], sealed)
            .map(Zeroizing::new)
            .is_ok()
    }
}

/// Appends as much of `data` to `buffer` as fits under `capacity`; returns the rest.
fn fill<'a>(buffer: &mut Vec<u8>, capacity: usize, data: &'a [u8]) -> &'a [u8] {
    let take = capacity.saturating_sub(buffer.len()).min(data.len());
    let (head, rest) = data.split_at(take);
    buffer.extend_from_slice(head);
    rest
}

/// Streaming encryptor: feed plaintext with [`update`](Self::update), end
/// with [`finish`](Self::finish). Holds at most one segment of plaintext.
pub struct AttachmentEncryptor {
    cipher: SegmentCipher,
    buffer: Zeroizing<Vec<u8>>,
    next_segment: u64,
    hasher: Sha256,
    plaintext_len: u64,
    ciphertext_len: u64,
}

impl AttachmentEncryptor {
    /// A fresh key from `rng` and an encryptor under it.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> (Self, AttachmentKey) {
        let key = AttachmentKey::generate(rng);
        (Self::with_key(&key), key)
    }

    /// An encryptor under a given key (for test vectors; never reuse a key).
    pub fn with_key(key: &AttachmentKey) -> Self {
        Self {
            cipher: SegmentCipher::new(key),
            buffer: Zeroizing::new(Vec::with_capacity(ATTACHMENT_SEGMENT_LEN)),
            next_segment: 0,
            hasher: Sha256::new(),
            plaintext_len: 0,
            ciphertext_len: 0,
        }
    }

    /// Encrypts the next `plaintext` bytes, appending finished segments to `out`.
    pub fn update(
        &mut self,
        mut plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AttachmentEncryptError> {
        while !plaintext.is_empty() {
            // A full segment is sealed only once more data proves it is not last.
            if self.buffer.len() == ATTACHMENT_SEGMENT_LEN {
                self.seal_buffer(false, out)?;
            }
            if self.buffer.is_empty() && plaintext.len() > ATTACHMENT_SEGMENT_LEN {
                // A whole segment with more after it: seal it from the
                // input, without going through the buffer.
                let (segment, rest) = plaintext.split_at(ATTACHMENT_SEGMENT_LEN);
                let index = self.segment_index(false)?;
                let start = out.len();
                self.cipher.seal_into(index, false, segment, out);
                self.account(segment.len(), start, out);
                plaintext = rest;
                continue;
            }
            plaintext = fill(&mut self.buffer, ATTACHMENT_SEGMENT_LEN, plaintext);
        }
        Ok(())
    }

    /// Seals the final segment into `out` and returns the digest and lengths.
    pub fn finish(
        mut self,
        out: &mut Vec<u8>,
    ) -> Result<AttachmentSummary, AttachmentEncryptError> {
        self.seal_buffer(true, out)?;
        Ok(AttachmentSummary {
            digest: AttachmentDigest(self.hasher.finalize().into()),
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
        })
    }

    fn seal_buffer(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), AttachmentEncryptError> {
        let index = self.segment_index(last)?;
        let start = out.len();
        self.cipher.seal_into(index, last, &self.buffer, out);
        self.account(self.buffer.len(), start, out);
        self.buffer.clear();
        Ok(())
    }

    /// The index of the next segment, if the stream has room for it.
    fn segment_index(&self, last: bool) -> Result<u32, AttachmentEncryptError> {
        let index =
            u32::try_from(self.next_segment).map_err(|_| AttachmentEncryptError::TooLarge)?;
        // A non-final segment at the last index would leave no index for the final one.
        if !last && index == u32::MAX {
            return Err(AttachmentEncryptError::TooLarge);
        }
        Ok(index)
    }

    /// Counts and hashes the segment just sealed into `out[start..]`.
    fn account(&mut self, plaintext_len: usize, start: usize, out: &[u8]) {
        let (_, sealed) = out.split_at(start);
        self.hasher.update(sealed);
        self.plaintext_len += plaintext_len as u64;
        self.ciphertext_len += sealed.len() as u64;
        self.next_segment += 1;
    }
}

impl fmt::Debug for AttachmentEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentEncryptor")
            .field("next_segment", &self.next_segment)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// Streaming decryptor: feed ciphertext with [`update`](Self::update) (any
/// chunking), end with [`finish`](Self::finish) or
/// [`finish_verified`](Self::finish_verified). Holds at most one sealed segment.
pub struct AttachmentDecryptor {
    cipher: SegmentCipher,
    buffer: Vec<u8>,
    next_segment: u64,
    hasher: Sha256,
    plaintext_len: u64,
    ciphertext_len: u64,
    failed: bool,
}

impl AttachmentDecryptor {
    /// A decryptor for a file encrypted under `key`.
    pub fn new(key: &AttachmentKey) -> Self {
        Self {
            cipher: SegmentCipher::new(key),
            buffer: Vec::with_capacity(SEALED_SEGMENT_LEN),
            next_segment: 0,
            hasher: Sha256::new(),
            plaintext_len: 0,
            ciphertext_len: 0,
            failed: false,
        }
    }

    /// Decrypts the next `ciphertext` bytes, appending the plaintext of every
    /// segment that completes (and authenticates) to `out`.
    pub fn update(
        &mut self,
        mut ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), AttachmentDecryptError> {
        if self.failed {
            return Err(AttachmentDecryptError::AlreadyFailed);
        }
        self.ciphertext_len += ciphertext.len() as u64;
        while !ciphertext.is_empty() {
            if self.buffer.len() == SEALED_SEGMENT_LEN {
                self.open_buffer(false, out)?;
            }
            // Hashed as it is consumed, segment by segment, while it is in cache.
            if self.buffer.is_empty() && ciphertext.len() > SEALED_SEGMENT_LEN {
                // A whole segment with more after it: open it from the
                // input, without going through the buffer.
                let (segment, rest) = ciphertext.split_at(SEALED_SEGMENT_LEN);
                self.hasher.update(segment);
                let result = self.open_segment(segment, false, out);
                self.settle(result)?;
                ciphertext = rest;
                continue;
            }
            let rest = fill(&mut self.buffer, SEALED_SEGMENT_LEN, ciphertext);
            let (taken, _) = ciphertext.split_at(ciphertext.len() - rest.len());
            self.hasher.update(taken);
            ciphertext = rest;
        }
        Ok(())
    }

    /// Opens the final segment into `out`; returns the ciphertext digest and
    /// lengths. Fails if the stream was truncated or its last segment is not final.
    pub fn finish(
        mut self,
        out: &mut Vec<u8>,
    ) -> Result<AttachmentSummary, AttachmentDecryptError> {
        if self.failed {
            return Err(AttachmentDecryptError::AlreadyFailed);
        }
        if self.buffer.len() < TAG_LEN {
            return Err(AttachmentDecryptError::Truncated);
        }
        self.open_buffer(true, out)?;
        Ok(AttachmentSummary {
            digest: AttachmentDigest(self.hasher.finalize().into()),
            plaintext_len: self.plaintext_len,
            ciphertext_len: self.ciphertext_len,
        })
    }

    /// [`finish`](Self::finish), then compares the ciphertext digest with the
    /// pointer's `expected` digest (constant time).
    pub fn finish_verified(
        self,
        out: &mut Vec<u8>,
        expected: &AttachmentDigest,
    ) -> Result<AttachmentSummary, AttachmentDecryptError> {
        let summary = self.finish(out)?;
        if summary.digest != *expected {
            return Err(AttachmentDecryptError::DigestMismatch);
        }
        Ok(summary)
    }

    fn open_buffer(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), AttachmentDecryptError> {
        let result = self.open_segment(&self.buffer, last, out);
        self.settle(result)?;
        self.buffer.clear();
        Ok(())
    }

    /// Books the outcome of [`open_segment`](Self::open_segment): on success
    /// counts the segment and its plaintext; on error marks the stream failed.
    fn settle(
        &mut self,
        result: Result<usize, AttachmentDecryptError>,
    ) -> Result<(), AttachmentDecryptError> {
        match result {
            Ok(plaintext_len) => {
                self.plaintext_len += plaintext_len as u64;
                self.next_segment += 1;
                Ok(())
            }
            Err(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }

    /// Opens `sealed` as the next segment, appending its plaintext to `out`;
    /// returns the plaintext length. On error `out` is as it was.
    fn open_segment(
        &self,
        sealed: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, AttachmentDecryptError> {
        let index =
            u32::try_from(self.next_segment).map_err(|_| AttachmentDecryptError::TooLarge)?;
        let start = out.len();
        if self.cipher.open_into(index, last, sealed, out) {
            let plaintext_len = out.len() - start;
            // Only the empty file has an empty final segment.
            if last && plaintext_len == 0 && index != 0 {
                return Err(AttachmentDecryptError::Corrupt {
                    segment: self.next_segment,
                });
            }
            return Ok(plaintext_len);
        }
        // Diagnose: the segment is authentic but its position in the stream is wrong.
        Err(match self.cipher.opens(index, !last, sealed) {
            true if last => AttachmentDecryptError::Truncated,
            true => AttachmentDecryptError::TrailingData,
            false => AttachmentDecryptError::Corrupt {
                segment: self.next_segment,
            },
        })
    }
}

impl fmt::Debug for AttachmentDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentDecryptor")
            .field("next_segment", &self.next_segment)
            .field("plaintext_len", &self.plaintext_len)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
