//! What can go wrong in a bot, and what the framework does about it.

use microbot_client::{AttachmentError, SendError, StoreError};

/// Why a bot or one of its handlers failed.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The user used a command wrongly; the text is sent back to them as is
    /// (say what the command expects).
    #[error("{0}")]
    Usage(String),
    /// A reply could not be queued (too long, unknown conversation...).
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// A file could not be sent.
    #[error("cannot send the file: {0}")]
    File(#[from] AttachmentError),
    /// The account's store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A command was registered under a name that is not 1 to 32 ASCII
    /// letters, digits or `_` (a mistake in the bot's code).
    #[error("bad command name {0:?}: use 1 to 32 ASCII letters, digits or _")]
    BadCommandName(String),
    /// The bot's own state (for example its saved file) failed; the text
    /// says what and where.
    #[error("bot state: {0}")]
    State(String),
}
