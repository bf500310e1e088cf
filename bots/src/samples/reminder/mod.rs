//! The reminder bot: `/remind <delay> <text>` sets a reminder in this chat,
//! `/reminders` lists them, `/cancel <id>` removes one. Reminders live in a
//! file ([`book`]), so they fire after a restart too; one overdue while the
//! bot was down fires as soon as it is back. A reminder is queued in the
//! account's outbox before it is removed from the file: a crash between
//! the two can repeat it once, never lose it.

pub mod book;
pub mod delay;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use microbot_client::{Account, Conversation, Events};
use tokio::sync::Notify;

use crate::{Bot, BotError, Context, Router};
use book::{Book, BookError};
use delay::parse_delay;

/// The first line of `/start` and `/help`.
pub const ABOUT: &str = "Reminder bot: I remind you of things later, even if I restart.";

/// What the handlers and the scheduler share.
struct Reminders {
    book: Mutex<Book>,
    changed: Notify,
}

impl Reminders {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn state_error(error: BookError) -> BotError {
    match error {
        BookError::Full => {
            BotError::Usage("You have too many reminders here; /cancel some first.".into())
        }
        BookError::BadText => BotError::Usage(format!(
            "A reminder text is 1 to {} bytes.",
            book::MAX_TEXT_LEN
        )),
        other => BotError::State(other.to_string()),
    }
}

fn router(reminders: &Arc<Reminders>) -> Router {
    let set = Arc::clone(reminders);
    let list = Arc::clone(reminders);
    let cancel = Arc::clone(reminders);
    Router::new(ABOUT)
        .command(
            "remind",
            "<delay> <text>",
            "remind this chat of <text> after <delay> (90s, 5m, 1h30m, 2d)",
            move |ctx, call| {
                let reminders = Arc::clone(&set);
                async move {
                    let usage = || {
                        BotError::Usage(
                            "Usage: /remind <delay> <text>, for example /remind 10m tea".into(),
                        )
                    };
                    let delay = call.args.first().ok_or_else(usage)?;
                    let delay = parse_delay(delay).map_err(|e| BotError::Usage(format!("{e}.")))?;
                    let text = call
                        .rest
                        .split_once(char::is_whitespace)
                        .map(|(_, text)| text.trim())
                        .filter(|text| !text.is_empty())
                        .ok_or_else(usage)?;
                    let due = now_ms()
                        .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                    let reminder = reminders
                        .book()
                        .add(&ctx.conversation().key(), ctx.author(), due, text)
                        .map_err(state_error)?;
                    reminders.changed.notify_one();
                    ctx.reply(&format!(
                        "Reminder {} set for {}.",
                        reminder.id,
                        describe(delay)
                    ))
                    .await
                    .map(|_| ())
                }
            },
        )
        .command(
            "reminders",
            "",
            "list the reminders of this chat",
            move |ctx, _| {
                let reminders = Arc::clone(&list);
                async move {
                    let pending = reminders.book().in_conversation(&ctx.conversation().key());
                    let text = if pending.is_empty() {
                        "No reminders here.".to_owned()
                    } else {
                        let now = now_ms();
                        let lines: Vec<String> = pending
                            .iter()
                            .map(|r| {
                                let left = Duration::from_millis(r.due_ms.saturating_sub(now));
                                format!("{}: {} (in {})", r.id, r.text, describe(left))
                            })
                            .collect();
                        lines.join("\n")
                    };
                    ctx.reply(&text).await.map(|_| ())
                }
            },
        )
        .command(
            "cancel",
            "<id>",
            "cancel a reminder of this chat",
            move |ctx, call| {
                let reminders = Arc::clone(&cancel);
                async move {
                    let id = call
                        .args
                        .first()
                        .and_then(|id| id.parse::<u64>().ok())
                        .ok_or_else(|| {
                            BotError::Usage("Usage: /cancel <id> (see /reminders)".into())
                        })?;
                    let removed = reminders
                        .book()
                        .remove(&ctx.conversation().key(), id)
                        .map_err(state_error)?;
                    reminders.changed.notify_one();
                    let text = if removed {
                        format!("Reminder {id} cancelled.")
                    } else {
                        format!("There is no reminder {id} here.")
                    };
                    ctx.reply(&text).await.map(|_| ())
                }
            },
        )
}

/// `90s`, `5m`, `1h 30m`...: a duration rounded down to whole seconds.
fn describe(delay: Duration) -> String {
    let secs = delay.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Fires reminders as they fall due, forever (cancelled with the bot).
async fn fire_when_due(reminders: Arc<Reminders>, sender: Context) {
    loop {
        let next = reminders.book().next_due().cloned();
        let Some(next) = next else {
            reminders.changed.notified().await;
            continue;
        };
        let wait = Duration::from_millis(next.due_ms.saturating_sub(now_ms()));
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = reminders.changed.notified() => {}
            }
            continue;
        }
        let Some(conversation) = Conversation::from_key(&next.conversation) else {
            tracing::warn!(id = next.id, "a reminder names no conversation; dropped");
            drop_reminder(&reminders, &next.conversation, next.id).await;
            continue;
        };
        match sender
            .send_to(&conversation, &format!("⏰ Reminder: {}", next.text))
            .await
        {
            Ok(_) => drop_reminder(&reminders, &next.conversation, next.id).await,
            Err(error) => {
                // Not queued (for example a group the bot has left): say so
                // once in the log and drop it rather than retry forever.
                tracing::warn!(id = next.id, %error, "a reminder cannot be sent; dropped");
                drop_reminder(&reminders, &next.conversation, next.id).await;
            }
        }
    }
}

async fn drop_reminder(reminders: &Reminders, conversation: &str, id: u64) {
    let removed = reminders.book().remove(conversation, id);
    if let Err(error) = removed {
        // The file cannot be written: wait before the next try instead of
        // spinning; the reminder stays and may repeat once the file works.
        tracing::error!(%error, "cannot save the reminder file");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the reminder bot on `account` with its reminders in `state_file`
/// until `shutdown` completes.
///
/// # Errors
/// [`BotError::State`] when the file cannot be read.
pub async fn run(
    account: Account,
    events: Events,
    state_file: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BotError> {
    let book = Book::open(state_file).map_err(|e| BotError::State(e.to_string()))?;
    let reminders = Arc::new(Reminders {
        book: Mutex::new(book),
        changed: Notify::new(),
    });
    let bot = Bot::new(account, events, router(&reminders))?;
    let sender = bot.context(Conversation::Direct(bot.account().username().to_owned()));
    let scheduler = tokio::spawn(fire_when_due(Arc::clone(&reminders), sender));
    bot.run(shutdown).await;
    scheduler.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(describe(Duration::from_secs(0)), "0s");
        assert_eq!(describe(Duration::from_secs(90)), "1m 30s");
        assert_eq!(describe(Duration::from_secs(86_400 + 7200)), "1d 2h");
    }
}
