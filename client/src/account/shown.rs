//! Which received messages the application has shown: the public methods,
//! each handing over to `shown::Shown`, which holds the logic.

use crate::account::Account;
use crate::error::StoreError;
use crate::shown::Shown;
use crate::shown::Unshown;

impl Account {
    /// Up to `limit` received messages not marked shown, with a store
    /// position after `after` (0: from the start), oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn unshown(&self, after: u64, limit: u32) -> Result<Vec<Unshown>, StoreError> {
        Shown { inner: &self.inner }.unshown(after, limit)
    }

    /// Marks the received message at store position `seq` shown.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn mark_shown(&self, seq: u64) -> Result<(), StoreError> {
        Shown { inner: &self.inner }.mark_shown(seq)
    }

    /// Marks shown the received message (`author`, `id`) with everything
    /// stored about it: its author's edits and deletes, and the reactions
    /// to it (for a view that showed the message as it is now, like a chat).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn mark_message_shown(
        &self,
        author: &str,
        id: &microbot_protocol::MessageId,
    ) -> Result<(), StoreError> {
        Shown { inner: &self.inner }.mark_message_shown(author, id)
    }
}
