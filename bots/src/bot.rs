//! The bot's loop: connect, read the account's events, route each to its
//! handler in its own task (a slow handler does not hold up the others),
//! answer `/start`, `/help` and unknown commands itself, and stop cleanly.

use std::future::Future;
use std::sync::Arc;

use microbot_client::{Account, Conversation, Event, Events, GroupUpdate};
use tokio::task::JoinSet;

use crate::command::{self, CommandError, Invocation};
use crate::context::{Context, Shared};
use crate::error::BotError;
use crate::pacing::{Pacer, PacingConfig};
use crate::router::{Edit, HandlerFuture, Reaction, Router};

/// Handlers running at once at the most; the loop waits for one to end
/// before it reads the next event beyond this (back-pressure instead of
/// unbounded tasks).
pub const MAX_RUNNING_HANDLERS: usize = 64;

/// A bot: an account, its events and a routing table.
pub struct Bot {
    shared: Arc<Shared>,
    events: Events,
    router: Arc<Router>,
}

impl Bot {
    /// A bot answering with `router` on `account` (enrolled and opened by
    /// the caller, not yet connected), with the default [`PacingConfig`].
    ///
    /// # Errors
    /// [`BotError::BadCommandName`] when a registered name is not valid.
    pub fn new(account: Account, events: Events, router: Router) -> Result<Self, BotError> {
        Self::with_pacing(account, events, router, PacingConfig::default())
    }

    /// [`Bot::new`] with another pacing of replies.
    ///
    /// # Errors
    /// As [`Bot::new`].
    pub fn with_pacing(
        account: Account,
        events: Events,
        router: Router,
        pacing: PacingConfig,
    ) -> Result<Self, BotError> {
        router.check()?;
        Ok(Self {
            shared: Arc::new(Shared {
                account,
                pacer: Pacer::new(pacing),
            }),
            events,
            router: Arc::new(router),
        })
    }

    /// The bot's account.
    pub fn account(&self) -> &Account {
        &self.shared.account
    }

    /// A context for sending on the bot's own initiative (a reminder
    /// firing, a scheduled post) into `conversation`.
    pub fn context(&self, conversation: Conversation) -> Context {
        let author = self.shared.account.username().to_owned();
        Context::new(Arc::clone(&self.shared), conversation, author, None)
    }

    /// Connects and answers events until `shutdown` completes or the
    /// account ends; then waits for the running handlers and disconnects.
    /// Handler failures are logged (never with message text) and, for
    /// [`BotError::Usage`], told to the user.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        self.shared.account.connect();
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while running.len() >= MAX_RUNNING_HANDLERS {
                running.join_next().await;
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                event = self.events.next() => {
                    let Some(event) = event else { break };
                    if let Some((context, task)) = self.route(event) {
                        running.spawn(report(context, task));
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
        self.shared.account.disconnect().await;
    }

    /// The handler for `event`, if any, with its context.
    fn route(&self, event: Event) -> Option<(Context, HandlerFuture)> {
        let me = self.shared.account.username();
        let context = |conversation: Conversation, author: String, message| {
            Context::new(Arc::clone(&self.shared), conversation, author, message)
        };
        match event {
            Event::Message(message) if message.author != me => {
                let ctx = context(
                    message.conversation.clone(),
                    message.author.clone(),
                    Some(message.message_id),
                );
                match command::parse(&message.text, me) {
                    Ok(invocation) => Some((ctx.clone(), self.run_command(ctx, invocation))),
                    Err(CommandError::NotACommand) => {
                        let handler = self.router.on_message.as_ref()?;
                        Some((ctx.clone(), handler(ctx, *message)))
                    }
                    Err(CommandError::ForAnotherBot) => None,
                    Err(error) => {
                        let text = format!("{error}. Send /help for the commands.");
                        Some((ctx.clone(), Box::pin(async move { reply(ctx, text).await })))
                    }
                }
            }
            Event::Edited {
                conversation,
                author,
                target,
                text,
            } if author != me => {
                let handler = self.router.on_edit.as_ref()?;
                let ctx = context(conversation, author, Some(target));
                Some((ctx.clone(), handler(ctx, Edit { target, text })))
            }
            Event::Reaction {
                conversation,
                from,
                target,
                emoji,
                removed,
            } if from != me => {
                let handler = self.router.on_reaction.as_ref()?;
                let ctx = context(conversation, from, Some(target));
                let reaction = Reaction {
                    target,
                    emoji,
                    removed,
                };
                Some((ctx.clone(), handler(ctx, reaction)))
            }
            Event::GroupChanged {
                group_id, update, ..
            } => {
                let handler = self.router.on_group_join.as_ref()?;
                let (by, joined) = match update {
                    GroupUpdate::Created { by, .. } => (by, vec![me.to_owned()]),
                    GroupUpdate::MembersAdded { usernames } => (String::new(), usernames),
                    _ => return None,
                };
                let ctx = context(Conversation::Group(group_id), by, None);
                Some((ctx.clone(), handler(ctx, joined)))
            }
            _ => None,
        }
    }

    /// The future answering `invocation`.
    fn run_command(&self, ctx: Context, invocation: Invocation) -> HandlerFuture {
        if let Some(entry) = self.router.commands.get(&invocation.name) {
            return (entry.handler)(ctx, invocation);
        }
        let text = match invocation.name.as_str() {
            "start" => self.router.start_text(),
            "help" => self.router.help_text(),
            other => format!("I don't know /{other}. Send /help for the commands."),
        };
        Box::pin(async move { reply(ctx, text).await })
    }
}

async fn reply(ctx: Context, text: String) -> Result<(), BotError> {
    ctx.reply(&text).await.map(|_| ())
}

/// Runs a handler; a usage error goes back to the user, any other failure
/// to the log (the error kind only: no message text).
async fn report(ctx: Context, task: HandlerFuture) {
    match task.await {
        Ok(()) => {}
        Err(BotError::Usage(text)) => {
            if let Err(error) = ctx.reply(&text).await {
                tracing::warn!(%error, "cannot send a usage hint");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "a bot handler failed");
            if let Err(error) = ctx.reply("Sorry, that did not work.").await {
                tracing::warn!(%error, "cannot tell the user");
            }
        }
    }
}
