//! One attachment transfer on its own QUIC stream (SPEC.md §12.11): the
//! header frame, the raw bytes, and the server's `AttachmentStreamResult`
//! frame: an upload sends the encrypted staging copy (staging.rs) from the
//! committed offset on; a download decrypts (§7) while writing the file,
//! one chunk at a time.
//!
//! Memory is bounded by one chunk of the file and one sealed segment,
//! whatever the file size. Not owned here: retries and resumption
//! (mod.rs), the cryptography (crypto-core).

use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use microbot_crypto::attachment::{AttachmentDecryptor, AttachmentDigest, AttachmentKey};
use microbot_protocol::codec::{FrameError, encode_frame};
use microbot_protocol::transport::{
    AttachmentDownloadStart, AttachmentStreamHeader, AttachmentStreamResult,
    AttachmentUploadDescriptor, AttachmentUploadStart, ErrorCode, attachment_stream_header,
};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use super::progress::Reporter;
use crate::error::{AttachmentError, ServerError, TransportError};
use crate::transport::{Connection, StreamRecv, StreamSend};

/// Plaintext read from the file per step.
pub(super) const CHUNK: usize = 64 * 1024;
/// Largest result frame accepted from the server.
const MAX_RESULT_FRAME: u64 = 4096;
/// Longest wait for the next bytes of a stream.
const STREAM_IDLE: Duration = Duration::from_secs(30);

fn lost(error: impl std::fmt::Display) -> TransportError {
    TransportError::ConnectionLost(error.to_string())
}

async fn write_header(
    send: &mut StreamSend,
    kind: attachment_stream_header::Kind,
) -> Result<(), TransportError> {
    let mut buf = BytesMut::new();
    encode_frame(&AttachmentStreamHeader { kind: Some(kind) }, &mut buf)?;
    send.write_all(&buf).await
}

/// The length prefix at the start of `buf`: `None` while incomplete.
fn varint(buf: &[u8]) -> Option<Result<(u64, usize), TransportError>> {
    let mut value = 0u64;
    for (index, byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some(Ok((value, index + 1)));
        }
    }
    (buf.len() >= 10).then_some(Err(TransportError::Frame(FrameError::InvalidLengthPrefix)))
}

async fn next_chunk(recv: &mut StreamRecv) -> Result<Option<bytes::Bytes>, TransportError> {
    match tokio::time::timeout(STREAM_IDLE, recv.read_chunk(CHUNK)).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(TransportError::Timeout),
    }
}

/// Reads the result frame; returns it with the raw bytes that followed it
/// in the same chunks.
async fn read_result(
    recv: &mut StreamRecv,
) -> Result<(AttachmentStreamResult, Vec<u8>), TransportError> {
    let mut head = Vec::new();
    loop {
        if let Some(prefix) = varint(&head) {
            let (len, prefix_len) = prefix?;
            if len > MAX_RESULT_FRAME {
                return Err(TransportError::Frame(FrameError::Oversize {
                    length: len,
                    max: MAX_RESULT_FRAME as usize,
                }));
            }
            let end = prefix_len + len as usize;
            if head.len() >= end {
                let body = head.get(prefix_len..end).unwrap_or_default();
                let result = AttachmentStreamResult::decode(body)
                    .map_err(|e| TransportError::Frame(FrameError::Malformed(e)))?;
                let rest = head.get(end..).unwrap_or_default().to_vec();
                return Ok((result, rest));
            }
        }
        match next_chunk(recv).await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => return Err(lost("the stream ended before its result")),
        }
    }
}

/// How an upload attempt ended short of success.
pub(super) enum UploadFailure {
    /// Worth another attempt (after reconnecting, or after `after`).
    Retry {
        /// Wait at least this long first.
        after: Duration,
    },
    /// Not worth retrying.
    Fatal(AttachmentError),
}

impl From<std::io::Error> for UploadFailure {
    fn from(error: std::io::Error) -> Self {
        UploadFailure::Fatal(error.into())
    }
}

fn retry(error: impl std::fmt::Display) -> UploadFailure {
    tracing::debug!(%error, "upload interrupted");
    UploadFailure::Retry {
        after: Duration::ZERO,
    }
}

/// What one upload attempt needs.
pub(super) struct Upload<'a> {
    pub conn: &'a Connection,
    pub descriptor: &'a AttachmentUploadDescriptor,
    /// The staging copy: the whole ciphertext (staging.rs).
    pub path: &'a Path,
    pub ciphertext_len: u64,
    /// Close the connection once this many encrypted bytes were written.
    pub interrupt_at: Option<u64>,
}

/// Sends the staging copy's ciphertext from the committed offset on.
/// A copy that is missing or of another length is
/// [`AttachmentError::Io`] or [`AttachmentError::FileChanged`].
pub(super) async fn upload(job: Upload<'_>) -> Result<(), UploadFailure> {
    let offset = job.descriptor.committed_offset;
    let mut file = tokio::fs::File::open(job.path).await?;
    if file.metadata().await?.len() != job.ciphertext_len || offset > job.ciphertext_len {
        return Err(UploadFailure::Fatal(AttachmentError::FileChanged));
    }
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let (mut send, mut recv) = job.conn.open_stream().await.map_err(retry)?;
    write_header(
        &mut send,
        attachment_stream_header::Kind::Upload(AttachmentUploadStart {
            attachment_id: job.descriptor.attachment_id.clone(),
            upload_token: job.descriptor.upload_token.clone(),
            offset,
        }),
    )
    .await
    .map_err(retry)?;
    let mut buf = vec![0u8; CHUNK];
    let mut position = offset;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        position += n as u64;
        if position > job.ciphertext_len {
            return Err(UploadFailure::Fatal(AttachmentError::FileChanged));
        }
        send.write_all(buf.get(..n).unwrap_or_default())
            .await
            .map_err(retry)?;
        if let Some(at) = job.interrupt_at
            && position >= at
        {
            // Let the bytes reach the server before the "network" drops.
            tokio::time::sleep(Duration::from_millis(200)).await;
            job.conn.abort("fault injection: upload interrupted");
            return Err(retry("fault injection"));
        }
    }
    if position != job.ciphertext_len {
        return Err(UploadFailure::Fatal(AttachmentError::FileChanged));
    }
    send.finish().await.map_err(retry)?;
    let (result, _) = read_result(&mut recv).await.map_err(retry)?;
    if let Some(error) = result.error {
        let error = ServerError::from_proto(error);
        if error.code == ErrorCode::Unavailable {
            return Err(UploadFailure::Retry {
                after: Duration::from_millis(error.retry_after_ms.max(50)),
            });
        }
        return Err(UploadFailure::Fatal(TransportError::Server(error).into()));
    }
    if result.committed_offset != job.ciphertext_len {
        return Err(retry("the server committed less than the whole file"));
    }
    Ok(())
}

/// Downloads `ciphertext_len` bytes of the attachment, decrypting and
/// verifying them into `file`. Returns the plaintext length.
pub(super) async fn download(
    conn: &Connection,
    attachment_id: bytes::Bytes,
    key: &AttachmentKey,
    digest: &AttachmentDigest,
    ciphertext_len: u64,
    file: &mut tokio::fs::File,
    progress: &Reporter<'_>,
) -> Result<u64, AttachmentError> {
    let (mut send, mut recv) = conn.open_stream().await?;
    write_header(
        &mut send,
        attachment_stream_header::Kind::Download(AttachmentDownloadStart {
            attachment_id,
            offset: 0,
            length: 0,
        }),
    )
    .await?;
    send.finish().await?;
    let (result, first) = read_result(&mut recv).await?;
    if let Some(error) = result.error {
        return Err(TransportError::Server(ServerError::from_proto(error)).into());
    }
    if result.length != ciphertext_len {
        return Err(AttachmentError::SizeMismatch {
            expected: ciphertext_len,
            actual: result.length,
        });
    }
    let mut decryptor = AttachmentDecryptor::new(key);
    let mut out = Vec::with_capacity(CHUNK + 64);
    let mut written = 0u64;
    let mut pending = Some(bytes::Bytes::from(first));
    loop {
        let chunk = match pending.take() {
            Some(chunk) => chunk,
            None => match next_chunk(&mut recv).await? {
                Some(chunk) => chunk,
                None => break,
            },
        };
        out.clear();
        decryptor.update(&chunk, &mut out)?;
        file.write_all(&out).await?;
        written += out.len() as u64;
        progress.report(written);
    }
    out.clear();
    let summary = decryptor.finish_verified(&mut out, digest)?;
    file.write_all(&out).await?;
    written += out.len() as u64;
    progress.report(written);
    Ok(summary.plaintext_len)
}
