//! Attachment records and the [`AttachmentStorage`] half of the storage
//! trait (SPEC.md §12.11 "Attachments", §14.1).
//!
//! The database holds each attachment's owner, declared size, committed
//! offset, expiry and the SHA-256 of its current upload token; the bytes
//! live in files under `<data_dir>/attachments/` (attachments.rs).
//!
//! Not owned here: the files and the streams (attachments.rs).

use super::values::net_id;
use super::{StorageError, StorageResult};

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

    /// A record from its stored columns (both backends store the same
    /// ones); an id or token hash of the wrong length, which neither
    /// backend writes, reads as zeros.
    pub(crate) fn from_columns(
        id: Vec<u8>,
        account_id: i64,
        token_hash: Vec<u8>,
        size: i64,
        committed: i64,
        expires_at_ms: i64,
    ) -> Self {
        Self {
            id: id.try_into().unwrap_or([0; ATTACHMENT_ID_LEN]),
            account_id,
            token_hash: token_hash.try_into().unwrap_or([0; 32]),
            size: net_id(size),
            committed: net_id(committed),
            expires_at_ms: net_id(expires_at_ms),
        }
    }
}

/// Whether an attachment of `size` bytes fits `quota` (0: no quota) next
/// to the `used` bytes of the owner's unexpired attachments.
///
/// # Errors
/// [`StorageError::QuotaExceeded`] when it does not.
pub(crate) fn check_quota(quota: u64, used: u64, size: u64) -> StorageResult<()> {
    if quota > 0 && used.saturating_add(size) > quota {
        Err(StorageError::QuotaExceeded)
    } else {
        Ok(())
    }
}

/// The attachment `account_id` may replace the upload token of: its own,
/// unexpired (`record` as loaded).
///
/// # Errors
/// [`StorageError::UnknownAttachment`] when there is none or another
/// account owns it.
pub(crate) fn owned_by(
    record: Option<AttachmentRecord>,
    account_id: i64,
) -> StorageResult<AttachmentRecord> {
    record
        .filter(|r| r.account_id == account_id)
        .ok_or(StorageError::UnknownAttachment)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(account_id: i64) -> AttachmentRecord {
        AttachmentRecord::from_columns(vec![1; 16], account_id, vec![2; 3], 10, -1, 5)
    }

    #[test]
    fn columns_quota_and_ownership() {
        let r = record(4);
        assert_eq!(
            (r.id, r.token_hash, r.size, r.committed),
            ([1; 16], [0; 32], 10, 0)
        );
        assert!(check_quota(0, u64::MAX, 1).is_ok());
        assert!(check_quota(10, 4, 6).is_ok());
        assert!(matches!(
            check_quota(10, 5, 6),
            Err(StorageError::QuotaExceeded)
        ));
        assert!(owned_by(Some(record(4)), 4).is_ok());
        assert!(matches!(
            owned_by(Some(record(4)), 5),
            Err(StorageError::UnknownAttachment)
        ));
        assert!(matches!(
            owned_by(None, 4),
            Err(StorageError::UnknownAttachment)
        ));
    }
}
