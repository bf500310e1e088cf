//! Attachment records and the [`AttachmentStorage`] half of the storage
//! trait (SPEC.md §12.11 "Attachments", §14.1).
//!
//! The database holds each attachment's owner, declared size, committed
//! offset, expiry and the SHA-256 of its current upload token; the bytes
//! live in files under `<data_dir>/attachments/` (attachments.rs).
//!
//! Not owned here: the files and the streams (attachments.rs).

use super::StorageResult;

/// Length of an attachment id.
pub const ATTACHMENT_ID_LEN: usize = 16;

/// One attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRecord {
    /// Random id.
    pub id: [u8; ATTACHMENT_ID_LEN],
    /// Uploading account.
    pub account_id: i64,
    /// SHA-256 of the current upload token.
    pub token_hash: [u8; 32],
    /// Declared total size.
    pub size: u64,
    /// Bytes durably written (fsynced) so far.
    pub committed: u64,
    /// Expiry time.
    pub expires_at_ms: u64,
}

impl AttachmentRecord {
    /// All bytes are committed.
    pub fn complete(&self) -> bool {
        self.committed == self.size
    }
}

/// Attachment operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait AttachmentStorage {
    /// Inserts a new attachment if the owner's unexpired attachments plus
    /// this one stay within `quota` bytes (0: no quota).
    async fn create_attachment(
        &self,
        record: &AttachmentRecord,
        quota: u64,
        now_ms: u64,
    ) -> StorageResult<()>;
    /// An unexpired attachment by id.
    async fn attachment(
        &self,
        id: &[u8; ATTACHMENT_ID_LEN],
        now_ms: u64,
    ) -> StorageResult<Option<AttachmentRecord>>;
    /// Replaces the upload token of the owner's unfinished attachment.
    async fn replace_upload_token(
        &self,
        id: &[u8; ATTACHMENT_ID_LEN],
        account_id: i64,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> StorageResult<AttachmentRecord>;
    /// Records a new committed offset (only forward, never past the size).
    async fn commit_attachment(
        &self,
        id: &[u8; ATTACHMENT_ID_LEN],
        committed: u64,
    ) -> StorageResult<()>;
    /// Deletes expired attachments and returns their ids (to delete files).
    async fn purge_expired_attachments(
        &self,
        now_ms: u64,
    ) -> StorageResult<Vec<[u8; ATTACHMENT_ID_LEN]>>;
}
