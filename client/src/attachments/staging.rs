//! The staging copy of a file queued for sending (SPEC.md §7): the file is
//! read once, when the application sends it, and encrypted under a fresh
//! attachment key into a file of the store's staging directory
//! (store/uploads.rs), which the drain later uploads as is. The copy is
//! ciphertext only; its key and digest go into the file message.
//!
//! Memory is bounded by one chunk of the file, whatever its size. The copy
//! is written under a `.part` name and renamed when complete, so a crash
//! mid-way leaves only a partial copy, which the next open removes. Not
//! owned here: the upload (upload.rs, stream.rs), the records (store).

use std::path::Path;

use microbot_crypto::attachment::{AttachmentDigest, AttachmentEncryptor, AttachmentKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::progress::Reporter;
use super::stream::CHUNK;
use crate::error::AttachmentError;

/// Encrypts the file at `source` under `key` into a new file at `dest`,
/// reporting plaintext progress; returns the ciphertext's digest.
///
/// # Errors
/// [`AttachmentError::Io`] reading or writing,
/// [`AttachmentError::FileChanged`] when the file's length is not
/// `plaintext_len` (it changed while read),
/// [`AttachmentError::TooLarge`]. `dest` is left for the caller to remove.
pub(super) async fn stage(
    source: &Path,
    key: &AttachmentKey,
    dest: &Path,
    plaintext_len: u64,
    progress: &Reporter<'_>,
) -> Result<AttachmentDigest, AttachmentError> {
    let mut input = tokio::fs::File::open(source).await?;
    let mut output = tokio::fs::File::create_new(dest).await?;
    let mut encryptor = AttachmentEncryptor::with_key(key);
    let mut buf = zeroize::Zeroizing::new(vec![0u8; CHUNK]);
    let mut out = Vec::with_capacity(CHUNK + 64);
    let mut read = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > plaintext_len {
            return Err(AttachmentError::FileChanged);
        }
        out.clear();
        encryptor
            .update(buf.get(..n).unwrap_or_default(), &mut out)
            .map_err(|_| AttachmentError::TooLarge)?;
        output.write_all(&out).await?;
        progress.report(read);
    }
    if read != plaintext_len {
        return Err(AttachmentError::FileChanged);
    }
    out.clear();
    let summary = encryptor
        .finish(&mut out)
        .map_err(|_| AttachmentError::TooLarge)?;
    output.write_all(&out).await?;
    output.flush().await?;
    output.sync_all().await?;
    Ok(summary.digest)
}
