//! # microbot-bot
//!
//! Bots on Microbot: an ordinary account (enrolled like any device, so
//! every message stays end-to-end encrypted) whose events a [`Router`]
//! turns into handler calls.
//!
//! ```no_run
//! # async fn demo(account: microbot_client::Account, events: microbot_client::Events) -> Result<(), microbot_bot::BotError> {
//! use microbot_bot::{Bot, BotError, Router};
//!
//! let router = Router::new("Echo bot: I say back what you send me.")
//!     .command("echo", "<text>", "say <text> back", |ctx, call| async move {
//!         if call.rest.is_empty() {
//!             return Err(BotError::Usage("Usage: /echo <text>".into()));
//!         }
//!         ctx.reply(&call.rest).await.map(|_| ())
//!     })
//!     .on_message(|ctx, message| async move { ctx.reply(&message.text).await.map(|_| ()) });
//! Bot::new(account, events, router)?
//!     .run(async { tokio::signal::ctrl_c().await.ok(); })
//!     .await;
//! # Ok(()) }
//! ```
//!
//! Modules, one job each:
//! - [`command`]: `/name@bot args "quoted arg"` parsing (pure).
//! - [`router`]: which handler answers what; `/help` from the descriptions.
//! - [`context`]: what a handler gets and how it answers.
//! - [`pacing`]: replies wait for their token instead of hitting the
//!   server's send limit.
//! - `bot`: the event loop.
//! - [`samples`]: the echo and reminder bots (docs/BOTS.md).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod bot;
pub mod command;
pub mod context;
mod error;
pub mod pacing;
pub mod router;
pub mod samples;

pub use bot::{Bot, MAX_RUNNING_HANDLERS};
pub use command::{CommandError, Invocation};
pub use context::Context;
pub use error::BotError;
pub use pacing::PacingConfig;
pub use router::{Edit, HandlerResult, Reaction, Router};
