//! The account's file transfers (SPEC.md §7, §12.11): the public methods,
//! each handing over to `attachments::Files`, which holds the logic.

use crate::account::Account;
use crate::attachments::Files;
use crate::attachments::{FileOptions, Progress};
use crate::error::{AttachmentError, StoreError};
use crate::events::Conversation;
use microbot_protocol::MessageId;
use microbot_protocol::content::AttachmentPointer;
use std::path::Path;

impl Account {
    /// Sends the file at `path` to `conversation` with default
    /// [`FileOptions`]; see [`Account::send_attachment`].
    ///
    /// # Errors
    /// [`AttachmentError`].
    pub async fn send_file(
        &self,
        conversation: &Conversation,
        path: &Path,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<MessageId, AttachmentError> {
        Files { inner: &self.inner }
            .send_file(conversation, path, progress)
            .await
    }

    /// Encrypts and uploads the file at `path` while reading it (constant
    /// memory), resuming after a dropped connection, then queues the file
    /// message (it leaves through the outbox like any message). Needs the
    /// connection for the upload. `progress` gets plaintext byte counts.
    ///
    /// # Errors
    /// [`AttachmentError`]; nothing is queued on error.
    pub async fn send_attachment(
        &self,
        conversation: &Conversation,
        path: &Path,
        options: FileOptions,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<MessageId, AttachmentError> {
        Files { inner: &self.inner }
            .send_attachment(conversation, path, options, progress)
            .await
    }

    /// The file pointer of the file message `message_id`, if known.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn attachment(
        &self,
        message_id: &MessageId,
    ) -> Result<Option<AttachmentPointer>, StoreError> {
        Files { inner: &self.inner }.attachment(message_id)
    }

    /// Downloads the file of the file message `message_id` to `dest`; see
    /// [`Account::download_pointer`].
    ///
    /// # Errors
    /// [`AttachmentError::UnknownMessage`], or as [`Account::download_pointer`].
    pub async fn download_attachment(
        &self,
        message_id: &MessageId,
        dest: &Path,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<u64, AttachmentError> {
        Files { inner: &self.inner }
            .download_attachment(message_id, dest, progress)
            .await
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
    pub async fn download_pointer(
        &self,
        pointer: &AttachmentPointer,
        dest: &Path,
        progress: impl Fn(Progress) + Send + Sync,
    ) -> Result<u64, AttachmentError> {
        Files { inner: &self.inner }
            .download_pointer(pointer, dest, progress)
            .await
    }
}
