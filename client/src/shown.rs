//! Which received messages the application has shown: every text, file,
//! edit, delete and reaction that arrives is stored flagged *not shown*,
//! whichever call fetched it (the background connection serves every
//! command alike), and stays so until the application marks it shown. A
//! program that prints what arrives (the CLI's `recv`) reads the unshown
//! rows in store order, rebuilt as the [`Event`]s they raised, and marks
//! each one after it reached the user, so nothing fetched while it was not
//! running, or left over by a count, is lost. Our own sends from this
//! device are never flagged. Not owned here: the SQL (store/), the event
//! shapes (events.rs, receive.rs).

use crate::account_state::Inner;
use crate::error::StoreError;
use crate::events::{Conversation, Event};
use crate::receive::event_for;

/// A received message not marked shown yet.
#[derive(Debug)]
pub struct Unshown {
    /// Its position in the store (increasing in arrival order); pass it to
    /// [`crate::Account::mark_shown`], or as `after` to
    /// [`crate::Account::unshown`] to read on.
    pub seq: u64,
    /// The event it raised, rebuilt from the store as it was raised (the
    /// converged view as of its arrival); `None` when it raised none (for
    /// example an edit whose original had not arrived).
    pub event: Option<Event>,
}

/// Which received messages were shown, over the store.
pub(crate) struct Shown<'a> {
    /// The account's shared state.
    pub(crate) inner: &'a Inner,
}

impl Shown<'_> {
    /// Up to `limit` received messages not marked shown, with a store
    /// position after `after` (0: from the start), oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub(crate) fn unshown(&self, after: u64, limit: u32) -> Result<Vec<Unshown>, StoreError> {
        self.inner.store.tx(|tx| {
            let mut out = Vec::new();
            for (seq, device, row) in tx.unshown(after, limit)? {
                let content = prost::Message::decode(row.content.as_slice()).ok();
                let event = match (content, Conversation::from_key(&row.conversation)) {
                    (Some(content), Some(conversation)) => event_for(
                        tx,
                        &conversation,
                        &row.author,
                        device,
                        &content,
                        row.message_id,
                        seq,
                    )?,
                    _ => None,
                };
                out.push(Unshown { seq, event });
            }
            Ok(out)
        })
    }

    /// Marks the received message at store position `seq` shown.
    ///
    /// # Errors
    /// [`StoreError`].
    pub(crate) fn mark_shown(&self, seq: u64) -> Result<(), StoreError> {
        self.inner.store.tx(|tx| tx.mark_shown(seq))
    }

    /// Marks shown the received message (`author`, `id`) with everything
    /// stored about it: its author's edits and deletes, and the reactions
    /// to it (for a view that showed the message as it is now, like a chat).
    ///
    /// # Errors
    /// [`StoreError`].
    pub(crate) fn mark_message_shown(
        &self,
        author: &str,
        id: &microbot_protocol::MessageId,
    ) -> Result<(), StoreError> {
        self.inner.store.tx(|tx| tx.mark_message_shown(author, id))
    }
}
