//! Uploading a queued file when the outbox drain reaches its row
//! (outbox/drain.rs): asks the server for an upload (or to resume the one
//! recorded), sends the staging copy from the committed offset on, then
//! records the server's attachment id in the file message and forgets the
//! copy, so the row leaves like any message.
//!
//! A lost connection (also mid-stream) keeps everything, with the upload's
//! id recorded: after reconnecting the drain resumes from what the server
//! committed. What can never succeed (the server refuses the file, the
//! staging copy is gone or damaged) is a [`SendFailureReason`] for the
//! drain to report. Not owned here: the stream (stream.rs), the order of
//! rows (outbox/plan.rs).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use microbot_protocol::content::Content;
use microbot_protocol::content::content::Body;
use microbot_protocol::transport::{
    AttachmentUploadDescriptor, AttachmentUploadRequest, client_frame::Request, response,
};
use prost::Message as _;

use super::stream::{self, Upload, UploadFailure};
use crate::account_state::Inner;
use crate::error::{AttachmentError, Interrupted, TransportError};
use crate::send_failure::SendFailureReason;
use crate::sessions::{SendFailure, transport_failure};
use crate::store::{OutboxRow, PendingUpload, SharedStore};
use crate::transport::Connection;

/// Stream attempts on one connection (the first and its resumptions after
/// the server asked to wait) before the drain gives up until reconnecting.
const UPLOAD_ATTEMPTS: u32 = 6;

/// Asks the server to start (`attachment_id` empty) or resume an upload of
/// `size` encrypted bytes.
async fn upload_request(
    conn: &Connection,
    size: u64,
    attachment_id: Bytes,
) -> Result<AttachmentUploadDescriptor, TransportError> {
    match conn
        .request(Request::AttachmentUpload(AttachmentUploadRequest {
            size,
            attachment_id,
        }))
        .await?
    {
        response::Result::AttachmentUpload(d) => Ok(d),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "AttachmentUpload",
        }),
    }
}

/// How the upload of a queued file ended, short of a stop of the drain.
#[derive(Debug)]
pub(crate) enum Uploaded {
    /// Complete: the outbox and history rows now name the attachment (the
    /// row leaves with the next pass); the record and the staging copy
    /// are gone.
    Ready,
    /// It can never succeed: drop the row for this reason (the caller
    /// removes the copy with the row).
    Refused(SendFailureReason),
}

/// A request's failure: a connection problem stops the drain, a refusal
/// drops the file.
fn refused_or_stop(error: TransportError) -> Result<Uploaded, Interrupted> {
    match transport_failure(error) {
        SendFailure::Permanent(reason) => Ok(Uploaded::Refused(reason)),
        SendFailure::Transport(error) => Err(Interrupted::Connection(error)),
        SendFailure::Store(error) => Err(Interrupted::Store(error)),
        SendFailure::Blocked => Err(Interrupted::Connection(TransportError::ConnectionLost(
            "unexpected answer to an upload".into(),
        ))),
    }
}

/// A stream's failure that is not worth another attempt.
fn fatal(error: AttachmentError) -> Result<Uploaded, Interrupted> {
    match error {
        AttachmentError::Transport(error) => refused_or_stop(error),
        AttachmentError::Io(error) => Ok(Uploaded::Refused(SendFailureReason::FileUnavailable {
            detail: format!("the staging copy cannot be read: {error}"),
        })),
        AttachmentError::FileChanged => Ok(Uploaded::Refused(SendFailureReason::FileUnavailable {
            detail: "the staging copy is damaged (its length changed)".into(),
        })),
        other => Ok(Uploaded::Refused(SendFailureReason::RequestFailed {
            detail: other.to_string(),
        })),
    }
}

/// Asks for the upload of `upload`: resumes the recorded one, or starts a
/// new one (also when the server no longer resumes the recorded one, e.g.
/// it expired), and records the id.
async fn descriptor(
    store: &SharedStore,
    conn: &Connection,
    upload: &PendingUpload,
) -> Result<Result<AttachmentUploadDescriptor, Uploaded>, Interrupted> {
    let total = upload.ciphertext_len;
    if let Some(id) = &upload.attachment_id {
        match upload_request(conn, total, Bytes::copy_from_slice(id)).await {
            Ok(descriptor) => return Ok(Ok(descriptor)),
            Err(error) if error.is_connection_problem() => {
                return Err(Interrupted::Connection(error));
            }
            Err(error) => {
                tracing::debug!(%error, "the server does not resume the upload; starting over");
            }
        }
    }
    let descriptor = match upload_request(conn, total, Bytes::new()).await {
        Ok(descriptor) => descriptor,
        Err(error) => return refused_or_stop(error).map(Err),
    };
    store
        .tx(|tx| tx.set_upload_attachment_id(&upload.message_id, Some(&descriptor.attachment_id)))
        .map_err(Interrupted::Store)?;
    Ok(Ok(descriptor))
}

/// Uploads the staging copy of `upload`, the pending upload of `row`
/// (whose content is `content`), then records the complete file message.
pub(crate) async fn upload_queued(
    inner: &Inner,
    conn: &Connection,
    row: &OutboxRow,
    upload: &PendingUpload,
    mut content: Content,
) -> Result<Uploaded, Interrupted> {
    let path = inner.store.staging_dir().join(&upload.staging);
    let mut descriptor = match descriptor(&inner.store, conn, upload).await? {
        Ok(descriptor) => descriptor,
        Err(refused) => return Ok(refused),
    };
    let mut complete = false;
    for attempt in 0..UPLOAD_ATTEMPTS {
        if descriptor.committed_offset == upload.ciphertext_len {
            complete = true;
            break;
        }
        let interrupt_at = inner
            .config
            .faults
            .interrupt_upload_at
            .filter(|_| !inner.upload_interrupted.swap(true, Ordering::Relaxed));
        let job = Upload {
            conn,
            descriptor: &descriptor,
            path: &path,
            ciphertext_len: upload.ciphertext_len,
            interrupt_at,
        };
        match stream::upload(job).await {
            Ok(()) => {
                complete = true;
                break;
            }
            Err(UploadFailure::Fatal(error)) => return fatal(error),
            Err(UploadFailure::Retry { after }) => {
                if conn.is_closed() {
                    return Err(Interrupted::Connection(TransportError::ConnectionLost(
                        "the connection closed during an upload".into(),
                    )));
                }
                tokio::time::sleep(after.max(Duration::from_millis(50))).await;
                descriptor =
                    match upload_request(conn, upload.ciphertext_len, descriptor.attachment_id)
                        .await
                    {
                        Ok(descriptor) => descriptor,
                        Err(error) => return refused_or_stop(error),
                    };
                tracing::debug!(
                    attempt,
                    committed = descriptor.committed_offset,
                    "resuming upload"
                );
            }
        }
    }
    if !complete {
        return Err(Interrupted::Connection(TransportError::ConnectionLost(
            format!("the upload did not complete after {UPLOAD_ATTEMPTS} attempts"),
        )));
    }
    if let Some(Body::Attachment(pointer)) = content.body.as_mut() {
        pointer.attachment_id = descriptor.attachment_id.clone();
    }
    inner
        .store
        .tx(|tx| tx.finish_upload(row, &inner.me.username, &content.encode_to_vec()))
        .map_err(Interrupted::Store)?;
    remove_copy(&inner.store, &upload.staging).await;
    Ok(Uploaded::Ready)
}

/// Removes the staging copy `name` (its record is gone); one that cannot
/// be removed now is removed when the store next opens.
pub(crate) async fn remove_copy(store: &SharedStore, name: &str) {
    let path = store.staging_dir().join(name);
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(%error, "cannot remove a staging copy"),
    }
}
