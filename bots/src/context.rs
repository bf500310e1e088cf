//! What a handler gets: the conversation it answers in, who wrote, and
//! ways to answer (paced, see [`crate::pacing`]).

use std::path::Path;
use std::sync::Arc;

use microbot_client::{Account, Conversation, MessageId};

use crate::error::BotError;
use crate::pacing::Pacer;

/// Shared by every handler of one bot.
pub(crate) struct Shared {
    pub(crate) account: Account,
    pub(crate) pacer: Pacer,
}

/// The situation a handler answers: cheap to clone, `Send`, so a handler
/// may keep it in a spawned task (the reminder bot does).
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    conversation: Conversation,
    author: String,
    message: Option<MessageId>,
}

impl Context {
    pub(crate) fn new(
        shared: Arc<Shared>,
        conversation: Conversation,
        author: String,
        message: Option<MessageId>,
    ) -> Self {
        Self {
            shared,
            conversation,
            author,
            message,
        }
    }

    /// The bot's account (history, groups, contacts...).
    pub fn account(&self) -> &Account {
        &self.shared.account
    }

    /// The conversation the event happened in; replies go there.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Who wrote the message, edited, reacted, or (for a group join) who
    /// added the bot.
    pub fn author(&self) -> &str {
        &self.author
    }

    /// The message the event is about, when there is one.
    pub fn message_id(&self) -> Option<MessageId> {
        self.message
    }

    /// Sends `text` to this conversation once the pacing allows.
    ///
    /// # Errors
    /// [`BotError::Send`] (empty or too long text, ...).
    pub async fn reply(&self, text: &str) -> Result<MessageId, BotError> {
        self.send_to(&self.conversation, text).await
    }

    /// Sends `text` to `conversation` (for example a reminder to the chat
    /// it was set in) once the pacing allows.
    ///
    /// # Errors
    /// [`BotError::Send`].
    pub async fn send_to(
        &self,
        conversation: &Conversation,
        text: &str,
    ) -> Result<MessageId, BotError> {
        self.shared.pacer.wait(&conversation.key()).await;
        Ok(self.shared.account.send_text(conversation, text)?)
    }

    /// Encrypts the file at `path` and queues it for this conversation; it
    /// is uploaded and sent when connected, like a text.
    ///
    /// # Errors
    /// [`BotError::File`] (unreadable file, too large...).
    pub async fn reply_file(&self, path: &Path) -> Result<MessageId, BotError> {
        self.shared.pacer.wait(&self.conversation.key()).await;
        Ok(self
            .shared
            .account
            .send_file(&self.conversation, path, |_| {})
            .await?)
    }

    /// Reacts to the event's message with `emoji` (nothing to react to for
    /// a group join: [`BotError::Usage`]).
    ///
    /// # Errors
    /// [`BotError::Send`], or `Usage` without a message.
    pub async fn react(&self, emoji: &str) -> Result<MessageId, BotError> {
        let target = self
            .message
            .ok_or_else(|| BotError::Usage("nothing to react to".into()))?;
        self.shared.pacer.wait(&self.conversation.key()).await;
        Ok(self
            .shared
            .account
            .react(&self.conversation, target, emoji, false)?)
    }
}
