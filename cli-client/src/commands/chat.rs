//! `chat`: a line-based conversation view. It shows the history, then
//! live messages, edits, deletes, reactions, typing and read receipts;
//! each message has a number for the commands (`/edit N text`,
//! `/delete N`, `/react N 👍`, `/unreact N 👍`, `/reply N text`, `/quit`).
//! Lines come from standard input, so a script can drive it through a
//! pipe; at the end of input it waits until what it sent left, then exits.
//! Not owned here: sending and converging messages (the SDK).

use std::collections::HashSet;
use std::io::BufRead as _;
use std::time::Duration;

use microbot_client::{
    Account, ConnectionState, Conversation, Event, MessageId, MessageSnapshot, MessageStatus,
    ReceiptKind,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::Chat;
use crate::error::{self, CliError};
use crate::progress;
use crate::render::Names;
use crate::session::{Ctx, Inbox, Online, id_hex};
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
    target: Target,
    view: View,
    /// Ids queued by this session that the server has not stored yet.
    pending: HashSet<MessageId>,
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
    let names = target::group_names(&online.account)?;
    let Online { account, inbox, .. } = online;
    let mut lines = stdin_lines();
    println!(
        "Chat with {} as {}. {HELP}",
        target.label,
        account.username()
    );
    let mut state = ChatState {
        account,
        target,
        view: View::default(),
        pending: HashSet::new(),
    };
    state.show_history(args.history)?;
    // Messages fetched while connecting are in the history already.
    for event in inbox.take_backlog() {
        if !matches!(event, Event::Message(_)) {
            state.show_event(&event, &names)?;
        }
    }
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(Some(line)) => {
                    if !state.handle_line(&line) {
                        break;
                    }
                }
                Some(None) | None => break,
            },
            event = inbox.next() => match event {
                Some(event) => state.show_event(&event, &names)?,
                None => return Err(CliError::Other("the account stopped unexpectedly".into())),
            },
        }
    }
    drain(inbox, &mut state, &names, linger).await
}

/// Lines of standard input, read on their own thread; `None` at the end.
fn stdin_lines() -> mpsc::UnboundedReceiver<Option<String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(line) => {
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    rx
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
            println!("{}", self.format_snapshot(n, snapshot));
            if snapshot.author != self.me() {
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
        let file = snapshot
            .attachment
            .as_ref()
            .map(|a| {
                format!(
                    " [file {:?}, {}: `microbot file get {}`]",
                    a.file_name,
                    progress::bytes(a.size as f64),
                    id_hex(&snapshot.message_id)
                )
            })
            .unwrap_or_default();
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
        format!("[{n}] {}: {body}{file}{reactions}", snapshot.author)
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
                eprintln!("error: {}", error::send(&self.target.label, e));
                None
            }
        }
    }

    /// Shows an event of this conversation; an error when the server
    /// refused this device.
    fn show_event(&mut self, event: &Event, names: &Names) -> Result<(), CliError> {
        match event {
            Event::Message(m) if m.conversation == self.target.conversation => {
                if self.view.number(&m.message_id).is_some() {
                    return Ok(());
                }
                let n = self.view.push(&m.author, m.message_id);
                let file = m
                    .attachment
                    .as_ref()
                    .map(|a| {
                        format!(
                            " [file {:?}, {}: `microbot file get {}`]",
                            a.file_name,
                            progress::bytes(a.size as f64),
                            id_hex(&m.message_id)
                        )
                    })
                    .unwrap_or_default();
                println!("[{n}] {}: {}{file}", m.author, m.text);
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
                println!("{} {author} edited: {text}", self.view.label(target));
            }
            Event::Deleted {
                conversation,
                author,
                target,
            } if *conversation == self.target.conversation => {
                println!("{} deleted by {author}", self.view.label(target));
            }
            Event::Reaction {
                conversation,
                from,
                target,
                emoji,
                removed,
            } if *conversation == self.target.conversation => {
                let verb = if *removed { "withdrew" } else { "reacted" };
                println!("{} {from} {verb} {emoji}", self.view.label(target));
            }
            Event::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            } if *conversation == self.target.conversation && from != self.me() => {
                let which: Vec<String> = message_ids.iter().map(|id| self.view.label(id)).collect();
                match kind {
                    ReceiptKind::Read => println!("  ✓✓ read by {from}: {}", which.join(" ")),
                    ReceiptKind::Delivered => {
                        println!("  ✓ delivered to {from}: {}", which.join(" "));
                    }
                }
            }
            Event::Typing {
                conversation,
                from,
                started,
            } if *conversation == self.target.conversation && from != self.me() => {
                if *started {
                    println!("  {from} is typing…");
                } else {
                    println!("  {from} stopped typing");
                }
            }
            Event::Sent { message_id, .. } => {
                self.pending.remove(message_id);
            }
            Event::SendFailed { message_id, reason } if self.pending.remove(message_id) => {
                eprintln!(
                    "error: {} was not sent: {}",
                    self.view.label(message_id),
                    error::send_failed(&self.target.label, reason)
                );
            }
            Event::SafetyNumberChanged { username, .. } => {
                eprintln!("warning: {}", CliError::UntrustedIdentity(username.clone()));
            }
            Event::Connection(ConnectionState::Disconnected { reason, .. }) => {
                eprintln!("(connection lost: {reason}; reconnecting)");
            }
            Event::Connection(ConnectionState::Connected) => eprintln!("(connected)"),
            Event::Connection(ConnectionState::Refused { reason }) => {
                return Err(CliError::DeviceRefused(reason.clone()));
            }
            Event::Message(m) => {
                eprintln!("(new message in {})", names.label(&m.conversation));
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles one input line; `false` to quit.
    fn handle_line(&mut self, line: &str) -> bool {
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
                println!("[{n}] {}: {text}", self.account.username());
            }
            return true;
        };
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        let result = match name {
            "quit" | "q" | "exit" => return false,
            "help" | "h" => {
                println!("{HELP}");
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
                    println!("{} edited: {text}", state.view.label(&id));
                }
            }),
            "delete" | "del" => self.with_number(rest, false, |state, (_, id), _| {
                let id = *id;
                if state
                    .queue(|account, conversation| account.delete(conversation, id))
                    .is_some()
                {
                    println!("{} deleted", state.view.label(&id));
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
                    println!(
                        "[{n}] {} (reply to {}): {text}",
                        state.account.username(),
                        state.view.label(&id)
                    );
                }
            }),
            _ => Err(CliError::Input(format!("unknown command /{name}. {HELP}"))),
        };
        if let Err(error) = result {
            eprintln!("error: {error}");
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
