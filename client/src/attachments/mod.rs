//! Files (SPEC.md §7, §12.11): [`crate::Account::send_file`] encrypts a file
//! with a fresh attachment key while reading it into a staging copy kept
//! next to the store (staging.rs), and queues the file message, an
//! `AttachmentPointer` (key, digest, size, name, type), in the outbox
//! behind its upload, online or offline. When the drain reaches it, the
//! copy is uploaded on its own stream (upload.rs, stream.rs), an
//! interrupted upload resuming from the server's committed offset after
//! the connection comes back (also after a restart), and the message
//! leaves naming the server's attachment id. [`crate::Account::download_attachment`]
//! downloads, verifies and decrypts into a temporary file next to the
//! destination, renamed into place only once the whole file authenticated
//! and its digest and size match the pointer; on any failure the
//! temporary file is removed and nothing appears at the destination.
//!
//! Progress is reported through a callback, `Fn(Progress)`, called from the
//! working task with plaintext byte counts that never decrease and end
//! at `total_bytes` on success: for a send, the encryption into the
//! staging copy; for a download, the transfer. Not owned here: the stream protocol and
//! the cryptography (stream.rs, crypto-core).

mod progress;
mod staging;
mod stream;
pub(crate) mod upload;

pub use progress::Progress;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use microbot_crypto::attachment::{AttachmentDigest, AttachmentKey, ciphertext_len};
use microbot_protocol::MessageId;
use microbot_protocol::content::{AttachmentPointer, Content};
use microbot_protocol::transport::{AttachmentDownloadRequest, client_frame::Request, response};
use tokio::io::AsyncWriteExt as _;

use crate::account_state::Inner;
use crate::error::{AttachmentError, StoreError, TransportError};
use crate::events::Conversation;
use crate::messages::new_id;
use crate::now_ms;
use crate::outbox::check_destination;
use crate::store::{PARTIAL_SUFFIX, PendingUpload};
use progress::Reporter;
/// Longest `file_name` and `content_type` (SPEC.md §11.2).
const MAX_NAME_LEN: usize = 255;

/// What to tell the recipients about a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOptions {
    /// Suggested file name (default: the path's file name).
    pub file_name: Option<String>,
    /// MIME type (default: guessed from the extension).
    pub content_type: Option<String>,
    /// Text shown with the file.
    pub caption: String,
}

/// The longest prefix of `s` of at most `max` bytes, cut at a char boundary.
fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// A MIME type for common extensions; `application/octet-stream` otherwise.
fn guess_content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("txt" | "md" | "log") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

/// `dest`'s sibling `.<name>.part`, where the download is written first.
fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".to_owned());
    dest.with_file_name(format!(".{name}.part"))
}

/// The account's file transfers, over the state they need.
pub(crate) struct Files<'a> {
    /// The account's shared state.
    pub(crate) inner: &'a Inner,
}

impl Files<'_> {
    /// Sends the file at `path` to `conversation` with default
    /// [`FileOptions`]; see [`Account::send_attachment`](crate::Account::send_attachment).
    ///
    /// # Errors
    /// [`AttachmentError`].
    pub(crate) async fn send_file(
        &self,
        conversation: &Conversation,
        path: &Path,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<MessageId, AttachmentError> {
        self.send_attachment(conversation, path, FileOptions::default(), progress)
            .await
    }

    /// Encrypts the file at `path` into a staging copy while reading it
    /// (constant memory) and queues the file message behind its upload,
    /// online or not; the outbox drain uploads and sends it when
    /// connected (upload.rs). `progress` gets the plaintext byte counts of
    /// the encryption.
    ///
    /// # Errors
    /// [`AttachmentError`]; nothing is queued (and no copy kept) on error.
    pub(crate) async fn send_attachment(
        &self,
        conversation: &Conversation,
        path: &Path,
        options: FileOptions,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<MessageId, AttachmentError> {
        self.inner
            .store
            .tx(|tx| check_destination(tx, conversation))?;
        let size = tokio::fs::metadata(path).await?.len();
        let total = ciphertext_len(size).ok_or(AttachmentError::TooLarge)?;
        let reporter = Reporter::new(&progress, size);
        let key = AttachmentKey::generate(&mut rand::rng());
        let dir = self.inner.store.staging_dir();
        tokio::fs::create_dir_all(&dir).await?;
        let name = hex::encode(new_id());
        let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        let copy = dir.join(&name);
        let queued = async {
            let digest = staging::stage(path, &key, &partial, size, &reporter).await?;
            tokio::fs::rename(&partial, &copy).await?;
            let file_name = options.file_name.unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let content_type = options
                .content_type
                .unwrap_or_else(|| guess_content_type(path).to_owned());
            // The attachment id is the server's, known once the upload
            // started; the drain fills it in.
            let pointer = AttachmentPointer {
                attachment_id: Bytes::new(),
                key: Bytes::copy_from_slice(key.as_bytes()),
                digest: Bytes::copy_from_slice(&digest.to_bytes()),
                size,
                content_type: truncated(&content_type, MAX_NAME_LEN),
                file_name: truncated(&file_name, MAX_NAME_LEN),
                caption: options.caption,
                ..AttachmentPointer::default()
            };
            let message_id = new_id();
            let upload = PendingUpload {
                message_id,
                staging: name.clone(),
                ciphertext_len: total,
                attachment_id: None,
            };
            let content = Content::attachment(message_id, now_ms(), pointer);
            Ok::<_, AttachmentError>(crate::outbox::queue_upload(
                self.inner,
                conversation,
                content,
                &upload,
            )?)
        }
        .await;
        match queued {
            Ok(id) => {
                reporter.report(size);
                Ok(id)
            }
            Err(error) => {
                for leftover in [&partial, &copy] {
                    let _ = tokio::fs::remove_file(leftover).await;
                }
                Err(error)
            }
        }
    }

    /// The file pointer of the file message `message_id`, if known.
    ///
    /// # Errors
    /// [`StoreError`].
    pub(crate) fn attachment(
        &self,
        message_id: &MessageId,
    ) -> Result<Option<AttachmentPointer>, StoreError> {
        self.inner.store.tx(|tx| tx.attachment_pointer(message_id))
    }

    /// Downloads the file of the file message `message_id` to `dest`; see
    /// [`Account::download_pointer`](crate::Account::download_pointer).
    ///
    /// # Errors
    /// [`AttachmentError::UnknownMessage`], or as [`Account::download_pointer`](crate::Account::download_pointer).
    pub(crate) async fn download_attachment(
        &self,
        message_id: &MessageId,
        dest: &Path,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<u64, AttachmentError> {
        let pointer = self
            .attachment(message_id)?
            .ok_or(AttachmentError::UnknownMessage)?;
        self.download_pointer(&pointer, dest, progress).await
    }

    /// Downloads, verifies and decrypts the file `pointer` names into
    /// `dest` (replaced if it exists), streaming; returns its size. The
    /// file appears at `dest` only once it is complete and authentic.
    /// Needs the connection.
    ///
    /// # Errors
    /// [`AttachmentError::Corrupt`] when the bytes fail verification,
    /// [`AttachmentError::SizeMismatch`], `Transport` (e.g.
    /// `UNKNOWN_ATTACHMENT` once it expired), `Io`.
    pub(crate) async fn download_pointer(
        &self,
        pointer: &AttachmentPointer,
        dest: &Path,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<u64, AttachmentError> {
        let key = AttachmentKey::from_bytes(&pointer.key)
            .map_err(|_| AttachmentError::InvalidPointer("key is not 32 bytes"))?;
        let digest = AttachmentDigest::from_bytes(&pointer.digest)
            .map_err(|_| AttachmentError::InvalidPointer("digest is not 32 bytes"))?;
        if pointer.attachment_id.len() != 16 {
            return Err(AttachmentError::InvalidPointer("id is not 16 bytes"));
        }
        let expected = ciphertext_len(pointer.size)
            .ok_or(AttachmentError::InvalidPointer("size too large"))?;
        let conn = self
            .inner
            .online
            .get()
            .ok_or(AttachmentError::NotConnected)?;
        let info = match conn
            .request(Request::AttachmentDownload(AttachmentDownloadRequest {
                attachment_id: pointer.attachment_id.clone(),
            }))
            .await?
        {
            response::Result::AttachmentDownload(info) => info,
            _ => {
                return Err(TransportError::UnexpectedResponse {
                    expected: "AttachmentDownload",
                }
                .into());
            }
        };
        if info.size != expected {
            return Err(AttachmentError::SizeMismatch {
                expected,
                actual: info.size,
            });
        }
        let reporter = Reporter::new(&progress, pointer.size);
        let partial = partial_path(dest);
        let mut file = tokio::fs::File::create(&partial).await?;
        let result = stream::download(
            &conn,
            pointer.attachment_id.clone(),
            &key,
            &digest,
            expected,
            &mut file,
            &reporter,
        )
        .await;
        let finished = match result {
            Ok(len) if len != pointer.size => Err(AttachmentError::SizeMismatch {
                expected: pointer.size,
                actual: len,
            }),
            Ok(len) => {
                async {
                    file.flush().await?;
                    file.sync_all().await?;
                    drop(file);
                    tokio::fs::rename(&partial, dest).await?;
                    Ok(len)
                }
                .await
            }
            Err(error) => Err(error),
        };
        if finished.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        finished
    }
}
