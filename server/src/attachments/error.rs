//! What can go wrong with an attachment (SPEC.md §12.11): the request or
//! stream header's shape, the size and range, the upload token and offset,
//! the stream itself; what the store refuses (quota, unknown id) passes
//! through.
//!
//! The messages are the ones the client reads, in `Response.error` or in
//! the stream's `AttachmentStreamResult.error`; the error code of each
//! variant is chosen where every domain error becomes the wire form
//! (`crate::error`).

use crate::error::Internal;
use crate::storage::StorageError;

/// Why an attachment request or transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// An `attachment_id` that is not 16 bytes.
    #[error("attachment_id must be 16 bytes")]
    IdLength,
    /// An upload of size 0.
    #[error("size must be at least 1")]
    EmptySize,
    /// A declared size over `max_attachment_len`.
    #[error("attachments are at most {max} bytes")]
    TooLarge {
        /// The configured `max_attachment_len`.
        max: u64,
    },
    /// No such attachment, expired, or (for a download) not complete yet.
    #[error("unknown or expired attachment")]
    Unknown,
    /// A stream that is not logged in.
    #[error("log in first")]
    NotLoggedIn,
    /// No stream header within `frame_timeout_secs`.
    #[error("no attachment stream header in time")]
    HeaderTimeout,
    /// The stream ended before its header's length.
    #[error("stream ended before its header")]
    HeaderMissing,
    /// A header longer than the server reads.
    #[error("stream header too large")]
    HeaderTooLarge,
    /// The stream ended inside its header.
    #[error("stream ended inside its header")]
    HeaderTruncated,
    /// A header that does not decode.
    #[error("bad attachment stream header")]
    HeaderMalformed,
    /// A header that names neither an upload nor a download.
    #[error("empty attachment stream header")]
    HeaderEmpty,
    /// The upload token is not the attachment's current one.
    #[error("wrong upload token")]
    WrongToken,
    /// An upload that does not resume at the committed offset.
    #[error("upload must continue at the committed offset {committed}")]
    WrongOffset {
        /// Where the upload must continue.
        committed: u64,
    },
    /// Another upload of the attachment is running: retry after
    /// `retry_after_ms`.
    #[error("another upload of this attachment is running")]
    UploadRunning {
        /// When the other upload may have ended.
        retry_after_ms: u64,
    },
    /// The upload stream broke; what arrived is committed for a resume.
    #[error("upload stream broke")]
    StreamBroke,
    /// More bytes than the declared size.
    #[error("more bytes than the declared size")]
    BeyondDeclaredSize,
    /// A download range outside the attachment.
    #[error("range outside the attachment")]
    RangeOutside,
    /// The store refused (quota, unknown id) or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side (file I/O, a task).
    #[error(transparent)]
    Internal(#[from] Internal),
}
