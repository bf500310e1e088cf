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

    /// Sends the file at `path` like a text: accepted at once, online or
    /// offline. The file is read once, now, and encrypted while reading
    /// (constant memory) into a staging copy next to the store; the file
    /// message is queued in the outbox and shows in history as our own
    /// message ([`crate::DeliveryStage::Queued`] until it leaves). When
    /// connected, the copy is uploaded (an interrupted upload resumes, also
    /// after the account is reopened), then the message is sent with the
    /// returned id: [`crate::Event::Sent`], or [`crate::Event::SendFailed`]
    /// when it can never leave (e.g. the server refuses the file). What is
    /// queued after it to the same conversation leaves after it.
    /// `progress` gets the plaintext byte counts of the encryption; the
    /// file at `path` may change or go once this returns. While the upload
    /// waits, [`Account::attachment`] gives the pointer with an empty
    /// `attachment_id`.
    ///
    /// # Errors
    /// [`AttachmentError`] (an invalid destination, the file unreadable or
    /// changing while read, too large for the format); nothing is queued
    /// and no copy kept on error.
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
