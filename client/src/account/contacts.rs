//! The account's contacts: who they are, their safety numbers, whether
//! they are bots, and accepting a contact's new identity (SPEC.md §8).

use super::Account;
use crate::error::{AcknowledgeError, StoreError};
use microbot_crypto::fingerprint::SafetyNumber;

impl Account {
    /// The safety number with a contact whose identity we know.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn safety_number(&self, username: &str) -> Result<Option<SafetyNumber>, StoreError> {
        let contact = self.inner.store.tx(|tx| tx.contact(username))?;
        Ok(contact.and_then(|c| {
            let key = c.pending.unwrap_or(c.identity);
            self.inner.me.safety_number_with(username, &key)
        }))
    }

    /// Whether `username` is a bot account (SPEC.md §12.3), as the server
    /// said when this device last fetched its keys (false before that).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn is_bot(&self, username: &str) -> Result<bool, StoreError> {
        self.inner.store.tx(|tx| crate::bots::is_bot(tx, username))
    }

    /// Usernames of known contacts, with whether a safety-number change is
    /// waiting for acknowledgement.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn contacts(&self) -> Result<Vec<(String, bool)>, StoreError> {
        Ok(self
            .inner
            .store
            .tx(|tx| tx.contacts())?
            .into_iter()
            .map(|(name, c)| (name, c.pending.is_some()))
            .collect())
    }

    /// Accepts a contact's new identity key (after the user compared the new
    /// safety number): sessions with the old identity are dropped and
    /// queued sends to the contact leave.
    ///
    /// # Errors
    /// [`AcknowledgeError::NothingPending`] when no change is waiting.
    pub fn acknowledge_identity_change(&self, username: &str) -> Result<(), AcknowledgeError> {
        self.inner.store.tx(|tx| -> Result<(), AcknowledgeError> {
            let mut contact =
                tx.contact(username)?
                    .ok_or_else(|| AcknowledgeError::NothingPending {
                        username: username.to_owned(),
                    })?;
            let new = contact
                .pending
                .take()
                .ok_or_else(|| AcknowledgeError::NothingPending {
                    username: username.to_owned(),
                })?;
            contact.identity = new;
            contact.devices_checked_ms = 0;
            tx.delete_sessions_not_of(username, &new)?;
            tx.set_contact(username, &contact)?;
            Ok(())
        })?;
        self.inner.outbox_wake.notify_one();
        Ok(())
    }
}
