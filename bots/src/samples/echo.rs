//! The echo bot: `/echo <text>` and plain messages are said back, edits
//! and reactions are acknowledged, `/file <text>` answers with a file, and
//! it greets groups it is added to and members who join them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{BotError, Router};

/// The first line of `/start` and `/help`.
pub const ABOUT: &str = "Echo bot: I say back what you send me.";

/// The echo bot's routing table.
pub fn router() -> Router {
    Router::new(ABOUT)
        .command(
            "echo",
            "<text>",
            "say <text> back",
            |ctx, call| async move {
                if call.rest.is_empty() {
                    return Err(BotError::Usage("Usage: /echo <text>".into()));
                }
                ctx.reply(&call.rest).await.map(|_| ())
            },
        )
        .command(
            "file",
            "<text>",
            "send <text> back as a file",
            |ctx, call| async move {
                if call.rest.is_empty() {
                    return Err(BotError::Usage("Usage: /file <text>".into()));
                }
                let path = scratch_path();
                std::fs::write(&path, call.rest.as_bytes()).map_err(|e| {
                    BotError::State(format!("cannot write {}: {e}", path.display()))
                })?;
                let sent = ctx.reply_file(&path).await;
                let _ = std::fs::remove_file(&path);
                sent.map(|_| ())
            },
        )
        .on_message(|ctx, message| async move {
            let text = match (&message.attachment, message.text.is_empty()) {
                (Some(_), _) => "Thanks for the file.".to_owned(),
                (None, true) => return Ok(()),
                (None, false) => message.text.clone(),
            };
            ctx.reply(&text).await.map(|_| ())
        })
        .on_edit(|ctx, edit| async move {
            ctx.reply(&format!("You edited a message: {}", edit.text))
                .await
                .map(|_| ())
        })
        .on_reaction(|ctx, reaction| async move {
            if reaction.removed {
                return Ok(());
            }
            ctx.reply(&format!("You reacted {}", reaction.emoji))
                .await
                .map(|_| ())
        })
        .on_group_join(|ctx, joined| async move {
            let me = ctx.account().username().to_owned();
            let text = if joined.contains(&me) {
                "Hello, group! Send /help for what I can do.".to_owned()
            } else {
                format!("Welcome, {}!", joined.join(", "))
            };
            ctx.reply(&text).await.map(|_| ())
        })
}

/// A fresh file name in the temporary directory for one `/file` answer.
fn scratch_path() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("microbot-echo-{}-{n}.txt", std::process::id()))
}
