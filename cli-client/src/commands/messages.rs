//! `send` and `recv`: the scriptable face of messaging. `send` waits until
//! the server stored the message for every recipient device and prints its
//! id; `recv` prints events as they arrive (JSON lines with `--json`).
//!
//! `recv` shows what arrives while it runs, including what was queued on
//! the server while no command was connected. Messages another command
//! fetched (`send`, `chat`) are in the history, not shown again.

use std::io::Write as _;
use std::time::Duration;

use microbot_client::Event;
use tokio::time::Instant;

use crate::cli::{Recv, Send};
use crate::error::{self, CliError};
use crate::render::{self, EVENT_TYPES};
use crate::session::{Ctx, id_hex};
use crate::target;

/// `microbot send TARGET TEXT`: prints the message id.
pub async fn send(ctx: &Ctx, args: Send) -> Result<(), CliError> {
    let mut online = ctx.online().await?;
    let target = target::resolve(&online.account, &args.target)?;
    let id = online
        .account
        .send_text(&target.conversation, &args.text)
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

/// `microbot recv [--json] [--timeout SECS] [--count N] [--only TYPES]`.
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
    let mut names = target::group_names(&online.account)?;
    let deadline = args
        .timeout
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut shown = 0u64;
    let mut stdout = std::io::stdout();
    let outcome = loop {
        if args.count.is_some_and(|count| shown >= count) {
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
        let refused = match &event {
            Event::Connection(microbot_client::ConnectionState::Refused { reason }) => {
                Some(reason.clone())
            }
            _ => None,
        };
        if matches!(event, Event::GroupChanged { .. }) {
            match target::group_names(&online.account) {
                Ok(fresh) => names = fresh,
                Err(error) => break Err(error),
            }
        }
        let kind = render::event_type(&event);
        if default_shown(kind, &args.only) {
            let line = if args.json {
                render::to_json(&event, &names).to_string()
            } else {
                render::to_line(&event, &names)
            };
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // The reader went away (a closed pipe): stop quietly.
                break Ok(());
            }
            shown += 1;
        }
        if let Some(reason) = refused {
            break Err(CliError::DeviceRefused(reason));
        }
    };
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
