//! Which handler answers what: commands by name (with `/help` written from
//! their descriptions and a default `/start`), and one handler each for
//! plain messages, edits, reactions and group joins.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use microbot_client::{IncomingMessage, MessageId};

use crate::command::{Invocation, is_valid_name};
use crate::context::Context;
use crate::error::BotError;

/// What a handler returns.
pub type HandlerResult = Result<(), BotError>;

/// A boxed handler future.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler<T> = Arc<dyn Fn(Context, T) -> HandlerFuture + Send + Sync>;

/// An edit of a message the bot can see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The edited message.
    pub target: MessageId,
    /// Its text now.
    pub text: String,
}

/// A reaction added or withdrawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    /// The message reacted to.
    pub target: MessageId,
    /// The emoji.
    pub emoji: String,
    /// True when the reaction was withdrawn.
    pub removed: bool,
}

pub(crate) struct CommandEntry {
    pub(crate) usage: String,
    pub(crate) description: String,
    pub(crate) handler: Handler<Invocation>,
}

fn boxed<T, F, Fut>(handler: F) -> Handler<T>
where
    F: Fn(Context, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    Arc::new(move |context, value| Box::pin(handler(context, value)))
}

/// The bot's routing table, built once before [`crate::Bot::new`].
pub struct Router {
    about: String,
    pub(crate) commands: BTreeMap<String, CommandEntry>,
    pub(crate) on_message: Option<Handler<IncomingMessage>>,
    pub(crate) on_edit: Option<Handler<Edit>>,
    pub(crate) on_reaction: Option<Handler<Reaction>>,
    pub(crate) on_group_join: Option<Handler<Vec<String>>>,
}

impl Router {
    /// An empty table; `about` is the first line of `/start` and `/help`.
    pub fn new(about: &str) -> Self {
        Self {
            about: about.to_owned(),
            commands: BTreeMap::new(),
            on_message: None,
            on_edit: None,
            on_reaction: None,
            on_group_join: None,
        }
    }

    /// Runs `handler` for `/name …` (names are matched case-insensitively;
    /// `usage` lists the arguments, as in `"<delay> <text>"`, and with
    /// `description` makes the command's line in `/help`). Registering
    /// `start` or `help` replaces the built-in answer.
    pub fn command<F, Fut>(mut self, name: &str, usage: &str, description: &str, handler: F) -> Self
    where
        F: Fn(Context, Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.commands.insert(
            name.to_ascii_lowercase(),
            CommandEntry {
                usage: usage.to_owned(),
                description: description.to_owned(),
                handler: boxed(handler),
            },
        );
        self
    }

    /// Runs `handler` for every message that is not a command (texts and
    /// files, in direct chats and groups).
    pub fn on_message<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, IncomingMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.on_message = Some(boxed(handler));
        self
    }

    /// Runs `handler` when someone edits a message.
    pub fn on_edit<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Edit) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.on_edit = Some(boxed(handler));
        self
    }

    /// Runs `handler` when someone adds or withdraws a reaction.
    pub fn on_reaction<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Reaction) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.on_reaction = Some(boxed(handler));
        self
    }

    /// Runs `handler` when the bot is added to a group (the list holds the
    /// bot's own username) or members join a group it is in; the context's
    /// author is whoever added them when known.
    pub fn on_group_join<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.on_group_join = Some(boxed(handler));
        self
    }

    /// The answer to `/help`: the about line, then one line per command.
    pub fn help_text(&self) -> String {
        let mut text = format!("{}\n\nCommands:", self.about);
        let builtin = [("start", "", "what this bot is"), ("help", "", "this list")];
        let mut lines: BTreeMap<&str, (String, &str)> = builtin
            .iter()
            .map(|(name, usage, description)| (*name, ((*usage).to_owned(), *description)))
            .collect();
        for (name, entry) in &self.commands {
            lines.insert(name, (entry.usage.clone(), &entry.description));
        }
        for (name, (usage, description)) in lines {
            text.push_str(&format!("\n/{name}"));
            if !usage.is_empty() {
                text.push(' ');
                text.push_str(&usage);
            }
            text.push_str(&format!(" — {description}"));
        }
        text
    }

    /// The answer to `/start` unless the bot registers its own.
    pub fn start_text(&self) -> String {
        format!("{}\nSend /help for what I can do.", self.about)
    }

    /// Checks every registered name (1 to 32 ASCII letters, digits, `_`).
    pub(crate) fn check(&self) -> Result<(), BotError> {
        for name in self.commands.keys() {
            if !is_valid_name(name) {
                return Err(BotError::BadCommandName(name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_built_ins_and_commands_in_order() {
        let router = Router::new("Echo bot.")
            .command("echo", "<text>", "say it back", |_, _| async { Ok(()) })
            .command("Zap", "", "zap", |_, _| async { Ok(()) });
        assert_eq!(
            router.help_text(),
            "Echo bot.\n\nCommands:\n/echo <text> — say it back\n/help — this list\n/start — what this bot is\n/zap — zap"
        );
        assert!(router.check().is_ok());
    }

    #[test]
    fn bad_names_are_refused_at_start() {
        for name in ["", "a b", "é", &"x".repeat(33)] {
            let router = Router::new("x").command(name, "", "", |_, _| async { Ok(()) });
            assert!(
                matches!(router.check(), Err(BotError::BadCommandName(_))),
                "{name:?}"
            );
        }
    }
}
