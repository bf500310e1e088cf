//! `chat`: a line-based conversation view (what it shows counts as shown
//! for `recv`). It shows the history, then
//! live messages, edits, deletes, reactions, typing and read receipts;
//! each message has a number for the commands (`/edit N text`,
//! `/delete N`, `/react N 👍`, `/unreact N 👍`, `/reply N text`, `/quit`).
//! On a terminal the input is a line editor that also tells the others
//! when we type ([`crate::screen`]); otherwise lines come from standard
//! input, so a script can drive it through a pipe. At the end of input it
//! waits until what it sent left, then exits. Not owned here: sending and
//! converging messages (the SDK).

use std::collections::HashSet;
use std::time::Duration;

use microbot_client::{
    Account, ConnectionState, Conversation, Event, MessageId, MessageSnapshot, MessageStatus,
    ReceiptKind,
};
use tokio::time::Instant;

use crate::cli::Chat;
use crate::error::{self, CliError};
use crate::render::{self, Names};
use crate::screen::{Input, Screen};
use crate::session::{Ctx, Inbox, Online};
use crate::target::{self, Target};

const HELP: &str = "Type a message and press Enter. Commands: /edit N TEXT, /delete N, \
/react N EMOJI, /unreact N EMOJI, /reply N TEXT, /history, /help, /quit";

/// The numbered messages shown so far.
#[derive(Debug, Default)]
struct View {
    /// (author, id) of message number i + 1.
    entries: Vec<(String, MessageId)>,
}

impl View {
    fn number(&self, id: &MessageId) -> Option<usize> {
        self.entries
            .iter()
            .position(|(_, e)| e == id)
            .map(|i| i + 1)
    }

    fn push(&mut self, author: &str, id: MessageId) -> usize {
        if let Some(n) = self.number(&id) {
            return n;
        }
        self.entries.push((author.to_owned(), id));
        self.entries.len()
    }

    fn get(&self, number: &str) -> Result<&(String, MessageId), CliError> {
        number
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.entries.get(i))
            .ok_or_else(|| CliError::UnknownMessage(format!("no message number {number} here")))
    }

    fn label(&self, id: &MessageId) -> String {
        match self.number(id) {
            Some(n) => format!("[{n}]"),
            None => format!("[{}]", hex::encode(id.get(..4).unwrap_or_default())),
        }
    }
}

struct ChatState<'a> {
    account: &'a Account,
    screen: &'a Screen,
    target: Target,
    view: View,
    /// Ids queued by this session that the server has not stored yet.
    pending: HashSet<MessageId>,
    /// Receipts already shown: (from, message, read).
    receipts: HashSet<(String, MessageId, bool)>,
    /// Sends the SDK refused so far (any cause).
    failed_queues: usize,
    /// Input lines refused (a send refused, a bad command): the chat then
    /// exits non-zero, so a script piping lines in learns of it.
    refused_lines: usize,
}

/// `microbot chat TARGET`.
pub async fn chat(ctx: &Ctx, args: Chat) -> Result<(), CliError> {
    let mut online = ctx.online().await?;
    let result = run(&mut online, &args, ctx.connect_timeout).await;
    online.close().await;
    result
}

async fn run(online: &mut Online, args: &Chat, linger: Duration) -> Result<(), CliError> {
    let target = target::resolve(&online.account, &args.target)?;
    let mut names = target::group_names(&online.account)?;
    let Online { account, inbox, .. } = online;
    let (screen, mut input) = Screen::start();
    screen.say(&format!(
        "Chat with {} as {}. {HELP}",
        target.label,
        account.username()
    ));
    let mut state = ChatState {
        account,
        screen: &screen,
        target,
        view: View::default(),
        pending: HashSet::new(),
        receipts: HashSet::new(),
        failed_queues: 0,
        refused_lines: 0,
    };
    state.show_history(args.history)?;
    // Messages, edits, deletes and reactions fetched while connecting are
    // in the history shown above already.
    for event in inbox.take_backlog() {
        if !matches!(
            event,
            Event::Message(_)
                | Event::Edited { .. }
                | Event::Deleted { .. }
                | Event::Reaction { .. }
        ) {
            state.show_event(&event, &names)?;
        }
    }
    loop {
        tokio::select! {
            input = input.recv() => match input {
                Some(Input::Line(line)) => {
                    if !state.handle_line(&line) {
                        break;
                    }
                }
                Some(Input::Typing(started)) => state.typing(started),
                Some(Input::End) | None => break,
            },
            event = inbox.next() => match event {
                Some(event) => {
                    if matches!(event, Event::GroupChanged { .. }) {
                        names = target::group_names(state.account)?;
                    }
                    state.show_event(&event, &names)?;
                }
                None => return Err(CliError::Other("the account stopped unexpectedly".into())),
            },
        }
    }
    drain(inbox, &mut state, &names, linger).await?;
    match state.refused_lines {
        0 => Ok(()),
        n => Err(CliError::Input(format!(
            "{n} input line(s) were refused (see the errors above)"
        ))),
    }
}

impl ChatState<'_> {
    fn conversation(&self) -> &Conversation {
        &self.target.conversation
    }

    fn me(&self) -> &str {
        self.account.username()
    }

    fn show_history(&mut self, limit: u32) -> Result<(), CliError> {
        let history = self
            .account
            .history(self.conversation(), limit)
            .map_err(error::store)?;
        let mut unread = Vec::new();
        for snapshot in &history {
            if matches!(snapshot.status, MessageStatus::Pending) {
                continue;
            }
            let n = self.view.push(&snapshot.author, snapshot.message_id);
            self.screen.say(&self.format_snapshot(n, snapshot));
            self.account
                .mark_message_shown(&snapshot.author, &snapshot.message_id)
                .map_err(error::store)?;
            // What came before our own last message was seen when we wrote
            // it (the SDK keeps no read state to ask; this keeps reopening
            // a chat from re-sending the same receipts).
            if snapshot.author == self.me() {
                unread.clear();
            } else {
                unread.push(snapshot.message_id);
            }
        }
        if !unread.is_empty() {
            self.queue(|account, conversation| account.mark_read(conversation, &unread));
        }
        Ok(())
    }

    fn format_snapshot(&self, n: usize, snapshot: &MessageSnapshot) -> String {
        let body = match &snapshot.status {
            MessageStatus::Visible { text, edited, .. } => {
                let mut body = text.clone();
                if edited.is_some() {
                    body.push_str(" (edited)");
                }
                body
            }
            MessageStatus::Deleted => "(deleted)".to_owned(),
            MessageStatus::Pending => "…".to_owned(),
        };
        let body = render::body(&body, snapshot.attachment.as_ref(), &snapshot.message_id);
        let reactions = self
            .account
            .reactions(&snapshot.message_id)
            .unwrap_or_default()
            .into_iter()
            .map(|(who, emoji)| format!("{emoji} {who}"))
            .collect::<Vec<_>>();
        let reactions = if reactions.is_empty() {
            String::new()
        } else {
            format!("  [{}]", reactions.join(", "))
        };
        let reply = self.reply_label(snapshot.reply_to.as_ref());
        format!("[{n}] {}{reply}: {body}{reactions}", snapshot.author)
    }

    /// ` (reply to [N])` for a reply, as its sender sees it; empty otherwise.
    fn reply_label(&self, reply_to: Option<&MessageId>) -> String {
        reply_to
            .map(|id| format!(" (reply to {})", self.view.label(id)))
            .unwrap_or_default()
    }

    /// Tells the conversation we started or stopped typing. Typing
    /// notices are ephemeral: the SDK confirms no [`Event::Sent`] for them,
    /// so they are not waited for.
    fn typing(&self, started: bool) {
        if let Err(e) = self.account.typing(&self.target.conversation, started) {
            self.screen
                .warn(&format!("error: {}", error::send(&self.target.label, e)));
        }
    }

    /// Queues something; remembers its id until the server stored it.
    fn queue(
        &mut self,
        f: impl FnOnce(&Account, &Conversation) -> Result<MessageId, microbot_client::SendError>,
    ) -> Option<MessageId> {
        match f(self.account, &self.target.conversation) {
            Ok(id) => {
                self.pending.insert(id);
                Some(id)
            }
            Err(e) => {
                self.failed_queues += 1;
                self.screen
                    .warn(&format!("error: {}", error::send(&self.target.label, e)));
                None
            }
        }
    }

    /// Shows an event of this conversation; an error when the server
    /// refused this device.
    fn show_event(&mut self, event: &Event, names: &Names) -> Result<(), CliError> {
        // What the chat shows counts as shown: `recv` will not show it again.
        let here = |conversation: &Conversation| *conversation == self.target.conversation;
        let shown = match event {
            Event::Message(m) if here(&m.conversation) => Some((&m.author, m.message_id)),
            Event::Edited {
                conversation,
                author,
                target,
                ..
            }
            | Event::Deleted {
                conversation,
                author,
                target,
            } if here(conversation) => Some((author, *target)),
            Event::Reaction {
                conversation,
                from,
                target,
                ..
            } if here(conversation) => Some((from, *target)),
            _ => None,
        };
        if let Some((author, id)) = shown {
            self.account
                .mark_message_shown(author, &id)
                .map_err(error::store)?;
        }
        match event {
            Event::Message(m) if m.conversation == self.target.conversation => {
                if self.view.number(&m.message_id).is_some() {
                    return Ok(());
                }
                let n = self.view.push(&m.author, m.message_id);
                let body = render::body(&m.text, m.attachment.as_ref(), &m.message_id);
                let reply = self.reply_label(m.reply_to.as_ref());
                self.screen
                    .say(&format!("[{n}] {}{reply}: {body}", m.author));
                if m.author != self.me() {
                    let id = m.message_id;
                    self.queue(|account, conversation| account.mark_read(conversation, &[id]));
                }
            }
            Event::Edited {
                conversation,
                author,
                target,
                text,
            } if *conversation == self.target.conversation => {
                self.screen.say(&format!(
                    "{} {author} edited: {text}",
                    self.view.label(target)
                ));
            }
            Event::Deleted {
                conversation,
                author,
                target,
            } if *conversation == self.target.conversation => {
                self.screen
                    .say(&format!("{} deleted by {author}", self.view.label(target)));
            }
            Event::Reaction {
                conversation,
                from,
                target,
                emoji,
                removed,
            } if *conversation == self.target.conversation => {
                let verb = if *removed { "withdrew" } else { "reacted" };
                self.screen.say(&format!(
                    "{} {from} {verb} {emoji}",
                    self.view.label(target)
                ));
            }
            Event::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            } if *conversation == self.target.conversation && from != self.me() => {
                let read = *kind == ReceiptKind::Read;
                let which: Vec<String> = message_ids
                    .iter()
                    .filter(|id| self.receipts.insert((from.clone(), **id, read)))
                    .map(|id| self.view.label(id))
                    .collect();
                if which.is_empty() {
                    return Ok(());
                }
                if read {
                    self.screen
                        .say(&format!("  ✓✓ read by {from}: {}", which.join(" ")));
                } else {
                    self.screen
                        .say(&format!("  ✓ delivered to {from}: {}", which.join(" ")));
                }
            }
            Event::Typing {
                conversation,
                from,
                started,
            } if *conversation == self.target.conversation && from != self.me() => {
                if *started {
                    self.screen.say(&format!("  {from} is typing…"));
                } else {
                    self.screen.say(&format!("  {from} stopped typing"));
                }
            }
            Event::Sent { message_id, .. } => {
                self.pending.remove(message_id);
            }
            Event::SendFailed { message_id, reason } if self.pending.remove(message_id) => {
                self.screen.warn(&format!(
                    "error: {} was not sent: {}",
                    self.view.label(message_id),
                    error::send_failed(&self.target.label, reason)
                ));
            }
            Event::SafetyNumberChanged { username, .. } => {
                self.screen.warn(&format!(
                    "warning: {}",
                    CliError::UntrustedIdentity(username.clone())
                ));
            }
            Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
                self.screen
                    .warn(&format!("(connection lost: {reason}; reconnecting)"));
            }
            Event::GroupChanged {
                group_id, update, ..
            } if self.target.conversation == Conversation::Group(*group_id) => {
                self.screen
                    .say(&format!("  {}", render::group_update_text(update)));
            }
            Event::Connection(ConnectionState::Connected) => self.screen.warn("(connected)"),
            Event::Connection(ConnectionState::Refused { reason }) => {
                return Err(CliError::DeviceRefused(reason.clone()));
            }
            Event::Message(m) => {
                self.screen.warn(&format!(
                    "(new message in {})",
                    names.label(&m.conversation)
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles one input line, counting it when refused; `false` to quit.
    fn handle_line(&mut self, line: &str) -> bool {
        let failed_before = self.failed_queues;
        let go_on = self.handle_line_inner(line);
        if self.failed_queues > failed_before {
            self.refused_lines += 1;
        }
        go_on
    }

    fn handle_line_inner(&mut self, line: &str) -> bool {
        let line = line.trim_end();
        if line.is_empty() {
            return true;
        }
        let Some(command) = line.strip_prefix('/') else {
            let text = line.to_owned();
            if let Some(id) =
                self.queue(|account, conversation| account.send_text(conversation, &text))
            {
                let n = self.view.push(self.account.username(), id);
                self.screen
                    .say(&format!("[{n}] {}: {text}", self.account.username()));
            }
            return true;
        };
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        let result = match name {
            "quit" | "q" | "exit" => return false,
            "help" | "h" => {
                self.screen.say(HELP);
                Ok(())
            }
            "history" => {
                self.view = View::default();
                self.show_history(50)
            }
            "edit" => self.with_number(rest, true, |state, (_, id), text| {
                let (id, text) = (*id, text.to_owned());
                if state
                    .queue(|account, conversation| account.edit(conversation, id, &text))
                    .is_some()
                {
                    state
                        .screen
                        .say(&format!("{} edited: {text}", state.view.label(&id)));
                }
            }),
            "delete" | "del" => self.with_number(rest, false, |state, (_, id), _| {
                let id = *id;
                if state
                    .queue(|account, conversation| account.delete(conversation, id))
                    .is_some()
                {
                    state
                        .screen
                        .say(&format!("{} deleted", state.view.label(&id)));
                }
            }),
            "react" | "unreact" => {
                let remove = name == "unreact";
                self.with_number(rest, true, |state, (_, id), emoji| {
                    let (id, emoji) = (*id, emoji.to_owned());
                    state.queue(|account, conversation| {
                        account.react(conversation, id, &emoji, remove)
                    });
                })
            }
            "reply" => self.with_number(rest, true, |state, (author, id), text| {
                let (author, id, text) = (author.clone(), *id, text.to_owned());
                let snippet = state
                    .account
                    .message(&author, &id)
                    .ok()
                    .flatten()
                    .and_then(|s| match s.status {
                        MessageStatus::Visible { text, .. } => Some(text),
                        _ => None,
                    })
                    .unwrap_or_default();
                if let Some(new) = state.queue(|account, conversation| {
                    account.send_reply(conversation, &text, &author, id, &snippet)
                }) {
                    let n = state.view.push(state.account.username(), new);
                    state.screen.say(&format!(
                        "[{n}] {} (reply to {}): {text}",
                        state.account.username(),
                        state.view.label(&id)
                    ));
                }
            }),
            _ => Err(CliError::Input(format!("unknown command /{name}. {HELP}"))),
        };
        if let Err(error) = result {
            self.failed_queues += 1;
            self.screen.warn(&format!("error: {error}"));
        }
        true
    }

    /// Parses `N rest` and runs `f` with message N and the rest.
    fn with_number(
        &mut self,
        args: &str,
        needs_text: bool,
        f: impl FnOnce(&mut Self, &(String, MessageId), &str),
    ) -> Result<(), CliError> {
        let (number, rest) = args.trim().split_once(' ').unwrap_or((args.trim(), ""));
        if number.is_empty() || (needs_text && rest.trim().is_empty()) {
            return Err(CliError::Input(HELP.to_owned()));
        }
        let entry = self.view.get(number)?.clone();
        f(self, &entry, rest.trim());
        Ok(())
    }
}

/// Waits until everything this session queued left (or `linger` passed).
async fn drain(
    inbox: &mut Inbox,
    state: &mut ChatState<'_>,
    names: &Names,
    linger: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + linger;
    while !state.pending.is_empty() {
        match inbox.next_until(deadline).await? {
            Some(event) => state.show_event(&event, names)?,
            None => {
                return Err(CliError::Unreachable {
                    addr: inbox.server().to_owned(),
                    reason: format!(
                        "{} message(s) not confirmed within {} s; they stay queued and leave \
                         with the next command that connects",
                        state.pending.len(),
                        linger.as_secs()
                    ),
                });
            }
        }
    }
    Ok(())
}
