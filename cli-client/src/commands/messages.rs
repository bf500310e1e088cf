//! `send` and `recv`: the scriptable face of messaging. `send` waits until
//! the server stored the message for every recipient device and prints its
//! id; `recv` prints events as they arrive (JSON lines with `--json`).
//!
//! `recv` shows every received message not shown yet, whichever command
//! fetched it (`send`, `chat`, `file` also fetch while connected), then
//! what arrives while it runs; a message counts as shown once `recv`
//! printed it (the SDK's shown flag), so `--count` leaves the rest of a
//! batch for the next `recv`. Receipts, typing and connection changes are
//! shown live only.

use std::io::{Read, Write as _};
use std::time::Duration;

use microbot_client::{Event, MAX_TEXT_LEN};
use tokio::time::Instant;

use crate::cli::{Recv, Send};
use crate::error::{self, CliError};
use crate::render::{self, EVENT_TYPES};
use crate::session::{Ctx, id_hex, not_queued};
use crate::target;

/// `microbot send TARGET TEXT|-|--text-file PATH`: prints the message id.
/// The text is read (and checked) before connecting; when the server
/// cannot be reached nothing is queued, and the error says so.
pub async fn send(ctx: &Ctx, args: Send) -> Result<(), CliError> {
    let text = message_text(&args)?;
    let mut online = ctx.online().await.map_err(not_queued)?;
    let target = target::resolve(&online.account, &args.target)?;
    let id = online
        .account
        .send_text(&target.conversation, &text)
        .map_err(|e| error::send(&target.label, e))?;
    let result = online
        .inbox
        .wait_sent(&[id], &target.label, ctx.connect_timeout)
        .await;
    online.close().await;
    result?;
    println!("{}", id_hex(&id));
    Ok(())
}

/// The text of `send`: the argument, standard input (`-`) or a file, at
/// most [`MAX_TEXT_LEN`] bytes (more is not read), trailing line breaks
/// dropped.
fn message_text(args: &Send) -> Result<String, CliError> {
    let (what, bytes) = match (&args.text, &args.text_file) {
        (Some(text), None) if text != "-" => return Ok(text.clone()),
        (Some(_), None) => (
            "standard input".to_owned(),
            read_limited(std::io::stdin().lock()),
        ),
        (None, Some(path)) => (
            path.display().to_string(),
            std::fs::File::open(path).and_then(read_limited),
        ),
        _ => {
            return Err(CliError::Input(
                "give the text, `-` or --text-file PATH".into(),
            ));
        }
    };
    let bytes = bytes.map_err(|e| CliError::io(format!("reading {what}"), e))?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| CliError::Input(format!("the text in {what} is not UTF-8")))?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.len() > MAX_TEXT_LEN {
        return Err(error::text_too_long(&args.target, None));
    }
    Ok(text)
}

/// Reads at most [`MAX_TEXT_LEN`] + 2 bytes (room for a final line break),
/// so a huge input is never held whole.
fn read_limited(reader: impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(u64::try_from(MAX_TEXT_LEN).unwrap_or(u64::MAX) + 2)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Event types whose events are stored with the message (texts, files,
/// edits, deletes, reactions): `recv` shows them from the store's unshown
/// rows, whoever fetched them, and marks each one shown once printed.
const STORED_TYPES: &[&str] = &["message", "edited", "deleted", "reaction"];

/// Unshown rows read per store query.
const PAGE: u32 = 100;

/// Where one `recv` prints, and how much.
struct Printer<'a> {
    args: &'a Recv,
    names: render::Names,
    stdout: std::io::Stdout,
    shown: u64,
}

impl Printer<'_> {
    fn full(&self) -> bool {
        self.args.count.is_some_and(|count| self.shown >= count)
    }

    /// Prints one event if the filter lets it through; `Ok(false)` when the
    /// reader went away (a closed pipe).
    fn print(&mut self, event: &Event) -> Result<bool, ()> {
        if !default_shown(render::event_type(event), &self.args.only) {
            return Ok(false);
        }
        let line = if self.args.json {
            render::to_json(event, &self.names).to_string()
        } else {
            render::to_line(event, &self.names)
        };
        writeln!(self.stdout, "{line}")
            .and_then(|()| self.stdout.flush())
            .map_err(|_| ())?;
        self.shown += 1;
        Ok(true)
    }
}

/// Shows the unshown stored messages after `cursor` (moving it on), marking
/// each printed one shown; rows the filter leaves out stay unshown for a
/// later `recv`. `Ok(false)` when the reader went away.
fn show_stored(
    account: &microbot_client::Account,
    printer: &mut Printer<'_>,
    cursor: &mut u64,
) -> Result<bool, CliError> {
    loop {
        let page = account.unshown(*cursor, PAGE).map_err(error::store)?;
        if page.is_empty() {
            return Ok(true);
        }
        for row in page {
            if printer.full() {
                return Ok(true);
            }
            *cursor = row.seq;
            let Some(event) = row.event else {
                // It raised no event (an edit of a missing original).
                account.mark_shown(row.seq).map_err(error::store)?;
                continue;
            };
            match printer.print(&event) {
                Ok(true) => account.mark_shown(row.seq).map_err(error::store)?,
                Ok(false) => {}
                Err(()) => return Ok(false),
            }
        }
    }
}

/// `microbot recv [--json] [--timeout SECS] [--count N] [--only TYPES]`:
/// first every stored message not shown yet (fetched by this or any other
/// command), then what arrives.
pub async fn recv(ctx: &Ctx, args: Recv) -> Result<(), CliError> {
    for kind in &args.only {
        if !EVENT_TYPES.contains(&kind.as_str()) {
            return Err(CliError::Input(format!(
                "--only: unknown event type {kind:?} (known: {})",
                EVENT_TYPES.join(", ")
            )));
        }
    }
    let mut online = ctx.online().await?;
    let deadline = args
        .timeout
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut printer = Printer {
        args: &args,
        names: target::group_names(&online.account)?,
        stdout: std::io::stdout(),
        shown: 0,
    };
    let mut cursor = 0u64;
    let outcome = loop {
        match show_stored(&online.account, &mut printer, &mut cursor) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(error) => break Err(error),
        }
        if printer.full() {
            break Ok(());
        }
        let event = match deadline {
            Some(deadline) => match online.inbox.next_until(deadline).await {
                Ok(Some(event)) => event,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            },
            None => tokio::select! {
                event = online.inbox.next() => match event {
                    Some(event) => event,
                    None => break Err(CliError::Other("the account stopped unexpectedly".into())),
                },
                _ = tokio::signal::ctrl_c() => break Ok(()),
            },
        };
        if matches!(event, Event::GroupChanged { .. }) {
            match target::group_names(&online.account) {
                Ok(fresh) => printer.names = fresh,
                Err(error) => break Err(error),
            }
        }
        if STORED_TYPES.contains(&render::event_type(&event)) {
            // Stored before it was raised: shown from the store above.
            continue;
        }
        if printer.print(&event).is_err() {
            break Ok(());
        }
        if let Event::Connection(microbot_client::ConnectionState::Refused { reason }) = event {
            break Err(CliError::DeviceRefused(reason));
        }
    };
    let shown = printer.shown;
    online.close().await;
    outcome?;
    match args.count {
        Some(count) if shown < count => Err(CliError::Timeout {
            got: shown,
            wanted: count,
        }),
        _ => Ok(()),
    }
}

/// Without `--only`, housekeeping (sent confirmations, prekey refills) is
/// left out; connection changes are shown.
fn default_shown(kind: &str, only: &[String]) -> bool {
    if only.is_empty() {
        !matches!(kind, "sent" | "prekeys_refilled")
    } else {
        only.iter().any(|o| o == kind)
    }
}
