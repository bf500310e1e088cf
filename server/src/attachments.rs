//! Attachments (SPEC.md §12.11): encrypted bytes uploaded and downloaded on
//! dedicated QUIC streams, resumable, with size limits, quotas and expiry.
//!
//! Requests on the request stream create or resume an upload
//! (`AttachmentUploadRequest` → descriptor with id, a fresh upload token and
//! the committed offset) or describe a download. Bytes travel on a separate
//! client-opened bidirectional stream per transfer, opened on a logged-in
//! connection: one `AttachmentStreamHeader` frame, then raw bytes.
//!
//! Durability: bytes go to `<data_dir>/attachments/<hex id>`; after every
//! `attachment_commit_interval_bytes` (default 4 MiB), at the end of the
//! stream and when the stream breaks, the file is fsynced and only then the
//! new committed offset is written to the database. A resumed upload starts
//! at the committed offset; anything past it in the file is cut off first.
//! Only one upload stream per attachment runs at a time.
//!
//! Memory: a transfer holds one read chunk (at most 64 KiB) at a time, so
//! any size streams in constant memory.
//!
//! The transfer logic is written against [`TransferStream`], a byte stream
//! in each direction: a QUIC bidirectional stream here, an attachment
//! WebSocket in websocket_attach.rs (SPEC.md §12.13).
//!
//! Not owned here: the encryption of the bytes (the client's; the server
//! sees ciphertext only), the SQL (storage/sqlite/attachments.rs).

use std::collections::HashSet;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::encode_frame;
use microbot_protocol::transport::{
    AttachmentDownloadDescriptor, AttachmentDownloadRequest, AttachmentStreamHeader,
    AttachmentStreamResult, AttachmentUploadDescriptor, AttachmentUploadRequest, ErrorCode,
    attachment_stream_header,
};
use prost::Message as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

use crate::auth::devices::Caller;
use crate::error::{ApiError, Internal};
use crate::state::ServerState;
use crate::storage::AttachmentRecord;
use crate::storage::attachments::ATTACHMENT_ID_LEN;

/// Largest stream header accepted.
pub const MAX_HEADER_LEN: usize = 4096;
/// The HTTP path under which attachment ciphertext is served by id
/// (attachment_http.rs, SPEC.md §12.16).
pub const ATTACHMENT_PATH_PREFIX: &str = "/v1/attachments/";
/// Bytes read or written at a time.
pub const CHUNK: usize = 64 * 1024;
/// How long a client whose upload meets another one of the same
/// attachment waits before it tries again.
pub const UPLOAD_RUNNING_RETRY_MS: u64 = 1000;

mod error;

pub use error::AttachmentError;

type AttachmentId = [u8; ATTACHMENT_ID_LEN];

/// One attachment transfer's two byte streams, whatever carries them.
pub trait TransferStream: Send {
    /// Fills `buf` from the client's bytes; `Err` when they end first.
    fn read_exact(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<(), ()>> + Send;
    /// The next client bytes (at most [`CHUNK`]); `Ok(None)` at their end,
    /// `Err(reason)` when the transport broke.
    fn read_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, String>> + Send;
    /// Writes bytes to the client; `Err` when it is gone.
    fn write_all(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), ()>> + Send;
    /// Stops reading the client's bytes, telling it why where the
    /// transport can.
    fn stop(&mut self, code: ErrorCode);
    /// Abandons the server's bytes (a storage fault mid-download).
    fn reset(&mut self, code: ErrorCode);
    /// Ends the server's bytes and waits (briefly) for the client to take them.
    fn finish(&mut self) -> impl Future<Output = ()> + Send;
}

/// A QUIC bidirectional stream as a [`TransferStream`].
struct QuicTransfer {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

fn varint_code(code: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::try_from(code as i32).unwrap_or(0))
}

impl TransferStream for QuicTransfer {
    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ()> {
        self.recv.read_exact(buf).await.map_err(|_| ())
    }

    async fn read_chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self.recv.read_chunk(CHUNK, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.send.write_all(bytes).await.map_err(|_| ())
    }

    fn stop(&mut self, code: ErrorCode) {
        let _ = self.recv.stop(varint_code(code));
    }

    fn reset(&mut self, code: ErrorCode) {
        let _ = self.send.reset(varint_code(code));
    }

    async fn finish(&mut self) {
        let _ = self.send.finish();
        let _ = self.send.stopped().await;
    }
}

/// Attachments with an upload stream running (one writer each).
#[derive(Debug, Default)]
pub struct UploadsInProgress(Mutex<HashSet<AttachmentId>>);

struct UploadGuard<'a>(&'a UploadsInProgress, AttachmentId);

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.1);
    }
}

impl UploadsInProgress {
    fn claim(&self, id: AttachmentId) -> Option<UploadGuard<'_>> {
        let mut set = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        set.insert(id).then(|| UploadGuard(self, id))
    }
}

fn attachment_id(bytes: &[u8]) -> Result<AttachmentId, AttachmentError> {
    bytes.try_into().map_err(|_| AttachmentError::IdLength)
}

pub(crate) fn file_path(state: &ServerState, id: &AttachmentId) -> PathBuf {
    state.config.attachments_dir().join(hex::encode(id))
}

fn descriptor(record: &AttachmentRecord, token: &[u8; 32]) -> AttachmentUploadDescriptor {
    AttachmentUploadDescriptor {
        attachment_id: Bytes::copy_from_slice(&record.id),
        upload_token: Bytes::copy_from_slice(token),
        committed_offset: record.committed,
        expires_at_ms: record.expires_at_ms,
    }
}

/// `AttachmentUploadRequest`: starts an upload (checking size and quota)
/// or resumes one of the caller's (a fresh token replaces the old one).
///
/// # Errors
/// `ATTACHMENT_TOO_LARGE`, `QUOTA_EXCEEDED`, `UNKNOWN_ATTACHMENT`,
/// `INVALID_ARGUMENT`.
pub async fn upload_request(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: AttachmentUploadRequest,
) -> Result<AttachmentUploadDescriptor, AttachmentError> {
    let mut token = [0u8; 32];
    state.rng.fill(&mut token);
    let token_hash: [u8; 32] = Sha256::digest(token).into();
    let account_id = caller.account_id;
    let now = state.now_ms();
    if !request.attachment_id.is_empty() {
        let id = attachment_id(&request.attachment_id)?;
        let record = state
            .storage
            .replace_upload_token(&id, account_id, &token_hash, now)
            .await?;
        return Ok(descriptor(&record, &token));
    }
    if request.size == 0 {
        return Err(AttachmentError::EmptySize);
    }
    if request.size > state.config.max_attachment_len {
        return Err(AttachmentError::TooLarge {
            max: state.config.max_attachment_len,
        });
    }
    let mut id = [0u8; ATTACHMENT_ID_LEN];
    state.rng.fill(&mut id);
    let record = AttachmentRecord {
        id,
        account_id,
        token_hash,
        size: request.size,
        committed: 0,
        expires_at_ms: now.saturating_add(state.config.attachment_ttl_secs.saturating_mul(1000)),
    };
    let stored = record.clone();
    state
        .storage
        .create_attachment(&stored, state.config.attachment_quota_bytes, now)
        .await?;
    Ok(descriptor(&record, &token))
}

/// `AttachmentDownloadRequest`: describes a complete, unexpired attachment.
///
/// # Errors
/// `UNKNOWN_ATTACHMENT` (also while the upload is unfinished).
pub async fn download_request(
    state: &Arc<ServerState>,
    request: AttachmentDownloadRequest,
) -> Result<AttachmentDownloadDescriptor, AttachmentError> {
    let record = complete_attachment(state, &request.attachment_id).await?;
    Ok(AttachmentDownloadDescriptor {
        attachment_id: request.attachment_id,
        size: record.size,
        expires_at_ms: record.expires_at_ms,
    })
}

/// The record of a complete, unexpired attachment.
///
/// # Errors
/// `UNKNOWN_ATTACHMENT` (also while the upload is unfinished).
pub(crate) async fn complete_attachment(
    state: &Arc<ServerState>,
    id: &[u8],
) -> Result<AttachmentRecord, AttachmentError> {
    let id = attachment_id(id)?;
    state
        .storage
        .attachment(&id, state.now_ms())
        .await?
        .filter(AttachmentRecord::complete)
        .ok_or(AttachmentError::Unknown)
}

/// Reads the varint-prefixed header frame byte by byte, so no raw bytes
/// after it are consumed.
async fn read_header(
    recv: &mut impl TransferStream,
) -> Result<AttachmentStreamHeader, AttachmentError> {
    let mut len: u64 = 0;
    let mut byte = [0u8; 1];
    for shift in (0..).step_by(7).take(10) {
        recv.read_exact(&mut byte)
            .await
            .map_err(|_| AttachmentError::HeaderMissing)?;
        len |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_HEADER_LEN {
        return Err(AttachmentError::HeaderTooLarge);
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .map_err(|_| AttachmentError::HeaderTruncated)?;
    AttachmentStreamHeader::decode(buf.as_slice()).map_err(|_| AttachmentError::HeaderMalformed)
}

async fn reply(send: &mut impl TransferStream, result: AttachmentStreamResult) {
    let mut buf = BytesMut::new();
    if encode_frame(&result, &mut buf).is_ok() {
        let _ = send.write_all(&buf).await;
    }
}

/// The stream's answer to a failed transfer: the error in its wire form.
fn error_result(error: AttachmentError) -> (ErrorCode, AttachmentStreamResult) {
    let error = ApiError::from(error);
    let result = AttachmentStreamResult {
        error: Some(error.to_proto()),
        ..AttachmentStreamResult::default()
    };
    (error.code, result)
}

/// Serves one attachment stream of a connection; `caller` is `None` when
/// the connection is not logged in (the stream is then refused).
pub async fn serve_stream(
    state: Arc<ServerState>,
    caller: Option<Caller>,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    serve_transfer(&state, caller, &mut QuicTransfer { send, recv }).await;
}

/// Serves one attachment transfer on `io` (SPEC.md §12.11): the header
/// within `frame_timeout_secs`, then the upload or the download; refused
/// with `NOT_AUTHENTICATED` when `caller` is `None`.
pub async fn serve_transfer(
    state: &Arc<ServerState>,
    caller: Option<Caller>,
    io: &mut impl TransferStream,
) {
    let outcome = match caller {
        None => Err(AttachmentError::NotLoggedIn),
        // A stream that never sends its header must not live forever.
        Some(_) => match tokio::time::timeout(
            std::time::Duration::from_secs(state.config.frame_timeout_secs),
            read_header(io),
        )
        .await
        .unwrap_or(Err(AttachmentError::HeaderTimeout))
        {
            Ok(header) => match header.kind {
                Some(attachment_stream_header::Kind::Upload(start)) => {
                    upload(state, start, io).await
                }
                Some(attachment_stream_header::Kind::Download(start)) => {
                    return download(state, start, io).await;
                }
                None => Err(AttachmentError::HeaderEmpty),
            },
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(committed) => {
            reply(
                io,
                AttachmentStreamResult {
                    committed_offset: committed,
                    ..AttachmentStreamResult::default()
                },
            )
            .await;
        }
        Err(error) => {
            let (code, result) = error_result(error);
            io.stop(code);
            reply(io, result).await;
        }
    }
    io.finish().await;
}

/// Durably commits `committed` bytes: fsync the file, then the offset.
async fn commit(
    state: &Arc<ServerState>,
    file: &mut tokio::fs::File,
    id: AttachmentId,
    committed: u64,
) -> Result<(), AttachmentError> {
    file.flush().await.map_err(Internal::new)?;
    file.sync_data().await.map_err(Internal::new)?;
    Ok(state.storage.commit_attachment(&id, committed).await?)
}

async fn upload(
    state: &Arc<ServerState>,
    start: microbot_protocol::transport::AttachmentUploadStart,
    recv: &mut impl TransferStream,
) -> Result<u64, AttachmentError> {
    let id = attachment_id(&start.attachment_id)?;
    let record = state
        .storage
        .attachment(&id, state.now_ms())
        .await?
        .ok_or(AttachmentError::Unknown)?;
    let presented: [u8; 32] = Sha256::digest(&start.upload_token).into();
    if !bool::from(presented.ct_eq(&record.token_hash)) {
        return Err(AttachmentError::WrongToken);
    }
    if start.offset != record.committed {
        return Err(AttachmentError::WrongOffset {
            committed: record.committed,
        });
    }
    let _guard = state
        .uploads
        .claim(id)
        .ok_or(AttachmentError::UploadRunning {
            retry_after_ms: UPLOAD_RUNNING_RETRY_MS,
        })?;
    let dir = state.config.attachments_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(Internal::new)?;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(file_path(state, &id))
        .await
        .map_err(Internal::new)?;
    // Bytes past the committed offset were never acknowledged: cut them.
    file.set_len(record.committed)
        .await
        .map_err(Internal::new)?;
    file.seek(SeekFrom::Start(record.committed))
        .await
        .map_err(Internal::new)?;
    let interval = state.config.attachment_commit_interval_bytes;
    let mut written = record.committed;
    let mut committed = record.committed;
    loop {
        let chunk = match recv.read_chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) => {
                // The connection dropped: keep what arrived, for a resume.
                tracing::debug!(%error, "upload stream broke; committing what arrived");
                if written > committed {
                    commit(state, &mut file, id, written).await?;
                    state.metrics.attachment_bytes_in.add(written - committed);
                }
                return Err(AttachmentError::StreamBroke);
            }
        };
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        if written.saturating_add(len) > record.size {
            return Err(AttachmentError::BeyondDeclaredSize);
        }
        file.write_all(&chunk).await.map_err(Internal::new)?;
        written += len;
        if written - committed >= interval {
            commit(state, &mut file, id, written).await?;
            state.metrics.attachment_bytes_in.add(written - committed);
            committed = written;
        }
    }
    if written > committed {
        commit(state, &mut file, id, written).await?;
        state.metrics.attachment_bytes_in.add(written - committed);
    }
    Ok(written)
}

async fn download(
    state: &Arc<ServerState>,
    start: microbot_protocol::transport::AttachmentDownloadStart,
    send: &mut impl TransferStream,
) {
    let prepared = async {
        let record = complete_attachment(state, &start.attachment_id).await?;
        let end = match start.length {
            0 => record.size,
            n => start.offset.saturating_add(n),
        };
        if start.offset > record.size || end > record.size {
            return Err(AttachmentError::RangeOutside);
        }
        let mut file = tokio::fs::File::open(file_path(state, &record.id))
            .await
            .map_err(Internal::new)?;
        file.seek(SeekFrom::Start(start.offset))
            .await
            .map_err(Internal::new)?;
        Ok((file, end - start.offset))
    }
    .await;
    let (mut file, length) = match prepared {
        Ok(ok) => ok,
        Err(error) => {
            reply(send, error_result(error).1).await;
            send.finish().await;
            return;
        }
    };
    reply(
        send,
        AttachmentStreamResult {
            length,
            ..AttachmentStreamResult::default()
        },
    )
    .await;
    let mut left = length;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let Some(slice) = buf.get_mut(..want) else {
            break;
        };
        match file.read(slice).await {
            Ok(0) | Err(_) => {
                // The file is shorter than its committed size: a storage fault.
                send.reset(ErrorCode::Internal);
                return;
            }
            Ok(n) => {
                if send
                    .write_all(buf.get(..n).unwrap_or_default())
                    .await
                    .is_err()
                {
                    return;
                }
                let n = u64::try_from(n).unwrap_or(0);
                state.metrics.attachment_bytes_out.add(n);
                left = left.saturating_sub(n);
            }
        }
    }
    send.finish().await;
}

/// Deletes expired attachments and their files (called by the sweeper).
///
/// # Errors
/// [`Internal`] when the database fails.
pub async fn purge_expired(state: &Arc<ServerState>) -> Result<usize, Internal> {
    let ids = state
        .storage
        .purge_expired_attachments(state.now_ms())
        .await
        .map_err(Internal::new)?;
    for id in &ids {
        match tokio::fs::remove_file(file_path(state, id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, "cannot delete expired attachment file"),
        }
    }
    Ok(ids.len())
}
