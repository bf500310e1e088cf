//! Sending (through the outbox) and reading history: texts, replies,
//! reactions, edits, deletes, receipts, typing (SPEC.md §11), the
//! converged view of stored messages (§11.4) with the delivery state of
//! our own (delivery.rs), page by page (history.rs).

use super::Account;
use crate::delivery;
use crate::error::{HistoryError, SendError, StoreError};
use crate::events::Conversation;
use crate::history::{HistoryCursor, HistoryPage};
use crate::messages::new_id;
use crate::messages::{self, MessageSnapshot};
use crate::now_ms;
use crate::outbox::QueuedBy;
use crate::store::Tx;
use microbot_protocol::MessageId;
use microbot_protocol::content::{Content, ReplyTo, TypingAction};
use prost::Message as _;

impl Account {
    fn queue(&self, conversation: &Conversation, content: Content) -> Result<MessageId, SendError> {
        crate::outbox::queue(&self.inner, conversation, content, QueuedBy::App)
    }

    /// Sends a text message; returns its id. It waits in the outbox until
    /// connected ([`Event::Sent`](crate::Event::Sent) reports when the server stored it).
    ///
    /// # Errors
    /// [`SendError`]; nothing was queued.
    pub fn send_text(
        &self,
        conversation: &Conversation,
        text: &str,
    ) -> Result<MessageId, SendError> {
        check_text(text)?;
        self.queue(conversation, Content::text(new_id(), now_ms(), text))
    }

    /// Sends a text replying to (`author`, `target`), quoting `snippet`.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn send_reply(
        &self,
        conversation: &Conversation,
        text: &str,
        author: &str,
        target: MessageId,
        snippet: &str,
    ) -> Result<MessageId, SendError> {
        check_text(text)?;
        let snippet: String = snippet.chars().take(256).collect();
        self.queue(
            conversation,
            Content::reply(
                new_id(),
                now_ms(),
                text,
                ReplyTo::new(target, author, snippet),
            ),
        )
    }

    /// Adds (or, with `remove`, withdraws) an emoji reaction.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn react(
        &self,
        conversation: &Conversation,
        target: MessageId,
        emoji: &str,
        remove: bool,
    ) -> Result<MessageId, SendError> {
        self.queue(
            conversation,
            Content::reaction(new_id(), now_ms(), target, emoji, remove),
        )
    }

    /// Replaces the text of one of our messages.
    ///
    /// # Errors
    /// [`SendError::UnknownMessage`] when `target` is not ours.
    pub fn edit(
        &self,
        conversation: &Conversation,
        target: MessageId,
        text: &str,
    ) -> Result<MessageId, SendError> {
        check_text(text)?;
        let rows = self
            .inner
            .store
            .tx(|tx| tx.message_events(&self.inner.me.username, &target))?;
        if !rows.iter().any(|r| r.message_id == target) {
            return Err(SendError::UnknownMessage);
        }
        let revision = messages::latest_revision(&target, &rows).saturating_add(1);
        self.queue(
            conversation,
            Content::edit(new_id(), now_ms(), target, revision, text),
        )
    }

    /// Deletes one of our messages for everyone.
    ///
    /// # Errors
    /// [`SendError::UnknownMessage`] when `target` is not ours.
    pub fn delete(
        &self,
        conversation: &Conversation,
        target: MessageId,
    ) -> Result<MessageId, SendError> {
        let rows = self
            .inner
            .store
            .tx(|tx| tx.message_events(&self.inner.me.username, &target))?;
        if !rows.iter().any(|r| r.message_id == target) {
            return Err(SendError::UnknownMessage);
        }
        self.queue(conversation, Content::delete(new_id(), now_ms(), target))
    }

    /// Tells the conversation (and our other devices) that we read these messages.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn mark_read(
        &self,
        conversation: &Conversation,
        ids: &[MessageId],
    ) -> Result<MessageId, SendError> {
        self.queue(
            conversation,
            Content::read_receipt(new_id(), now_ms(), ids.iter().copied()),
        )
    }

    /// Sends a delivery receipt (sent automatically when
    /// [`AccountConfig::delivery_receipts`](crate::AccountConfig::delivery_receipts)
    /// is on; only this call's receipt is announced with
    /// [`Event::Sent`](crate::Event::Sent), the automatic ones are not).
    ///
    /// # Errors
    /// [`SendError`].
    pub fn mark_delivered(
        &self,
        conversation: &Conversation,
        ids: &[MessageId],
    ) -> Result<MessageId, SendError> {
        self.queue(
            conversation,
            Content::delivery_receipt(new_id(), now_ms(), ids.iter().copied()),
        )
    }

    /// Announces that we started (or stopped) typing.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn typing(
        &self,
        conversation: &Conversation,
        started: bool,
    ) -> Result<MessageId, SendError> {
        let action = if started {
            TypingAction::Started
        } else {
            TypingAction::Stopped
        };
        self.queue(conversation, Content::typing(new_id(), now_ms(), action))
    }

    /// How many sends wait in the outbox.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.store.tx(|tx| tx.outbox_len())
    }

    /// The converged state of the message (`author`, `id`), if known;
    /// for a message this account wrote, with its delivery state.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn message(
        &self,
        author: &str,
        id: &MessageId,
    ) -> Result<Option<MessageSnapshot>, StoreError> {
        self.inner.store.tx(|tx| self.snapshot(tx, author, id))
    }

    /// [`Account::message`] inside a transaction.
    fn snapshot(
        &self,
        tx: &Tx<'_>,
        author: &str,
        id: &MessageId,
    ) -> Result<Option<MessageSnapshot>, StoreError> {
        let rows = tx.message_events(author, id)?;
        let Some(mut snapshot) = messages::fold(author, id, &rows) else {
            return Ok(None);
        };
        if author == self.inner.me.username {
            snapshot.delivery = Some(delivery::state(tx, id)?);
        }
        Ok(Some(snapshot))
    }

    /// The newest `limit` messages of a conversation, oldest first: the
    /// newest page of [`Account::history_page`].
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn history(
        &self,
        conversation: &Conversation,
        limit: u32,
    ) -> Result<Vec<MessageSnapshot>, StoreError> {
        Ok(self.page_at(conversation, None, limit)?.messages)
    }

    /// One page of a conversation's text and file messages: the newest
    /// `limit` stored before `before` (the newest of all without a
    /// cursor), oldest first, and the cursor of the next older page
    /// ([`HistoryPage::older`], `None` when nothing older is stored).
    /// Pages do not shift while new messages arrive: the cursor marks a
    /// position in the store, not a count from the newest.
    ///
    /// # Errors
    /// [`HistoryError::ForeignCursor`] when `before` was handed out for
    /// another conversation (nothing is read); [`HistoryError::Store`].
    pub fn history_page(
        &self,
        conversation: &Conversation,
        before: Option<&HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPage, HistoryError> {
        let before = before
            .map(|cursor| {
                cursor
                    .position_in(conversation)
                    .ok_or(HistoryError::ForeignCursor)
            })
            .transpose()?;
        Ok(self.page_at(conversation, before, limit)?)
    }

    /// The page of `limit` messages stored before position `before`.
    fn page_at(
        &self,
        conversation: &Conversation,
        before: Option<u64>,
        limit: u32,
    ) -> Result<HistoryPage, StoreError> {
        self.inner.store.tx(|tx| {
            let (heads, older) = tx.history_page(&conversation.key(), before, limit)?;
            // The next page starts before the oldest message of this one
            // (before this page's own start when it is empty: limit 0).
            let next = heads.first().map(|h| h.seq).or(before).unwrap_or(u64::MAX);
            let mut messages = Vec::with_capacity(heads.len());
            for head in heads {
                if let Some(snapshot) = self.snapshot(tx, &head.author, &head.message_id)? {
                    messages.push(snapshot);
                }
            }
            Ok(HistoryPage {
                messages,
                older: older.then(|| HistoryCursor::new(conversation, next)),
            })
        })
    }

    /// Current reactions to a message: (who, emoji) pairs, after removals.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn reactions(&self, target: &MessageId) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.inner.store.tx(|tx| tx.reactions(target))?;
        let mut current: Vec<(String, String)> = Vec::new();
        for row in rows {
            let Ok(content) = Content::decode(row.content.as_slice()) else {
                continue;
            };
            if let Some(microbot_protocol::content::content::Body::Reaction(r)) = content.body {
                let entry = (row.author.clone(), r.emoji);
                current.retain(|e| *e != entry);
                if !r.remove {
                    current.push(entry);
                }
            }
        }
        Ok(current)
    }
}

/// Refuses, before anything is queued, a text that is empty or only white
/// space, and one longer than [`crate::MAX_TEXT_LEN`] (checked here so the
/// error quotes that one limit, not the whole content's).
fn check_text(text: &str) -> Result<(), SendError> {
    if text.trim().is_empty() {
        return Err(SendError::EmptyText);
    }
    if text.len() > crate::MAX_TEXT_LEN {
        return Err(SendError::TextTooLong {
            len: text.len(),
            max: crate::MAX_TEXT_LEN,
        });
    }
    Ok(())
}
