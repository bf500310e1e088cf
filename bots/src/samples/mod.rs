//! The two sample bots of docs/BOTS.md, as library code (the
//! `microbot-bot` binary runs them; the tests run them in-process).
//! - [`echo`]: says back what it is sent, and shows every kind of handler.
//! - [`reminder`]: `/remind 10m tea`, reminders kept in a file so they
//!   survive restarts.

pub mod echo;
pub mod reminder;
