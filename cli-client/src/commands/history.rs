//! `history`: a conversation's stored messages a page at a time, newest
//! page first, read from the store (works offline). Our own messages show
//! how far they got (queued, sent, delivered to, read by); the last line
//! (JSON: `older`) is the cursor of the next older page. Not owned here:
//! paging and delivery state (the SDK's `Account::history_page`).

use microbot_client::{DeliveryState, HistoryError, MessageSnapshot, MessageStatus};
use serde_json::{Value, json};

use crate::cli::History;
use crate::error::{self, CliError};
use crate::render;
use crate::session::{Ctx, id_hex};
use crate::target;

/// `microbot history TARGET [--limit N] [--before CURSOR] [--json]`.
pub fn history(ctx: &Ctx, args: History) -> Result<(), CliError> {
    let opened = ctx.open()?;
    let account = &opened.account;
    let names = target::group_names(account)?;
    let target = target::resolve(account, &args.target)?;
    let page = account
        .history_page(&target.conversation, args.before.as_ref(), args.limit)
        .map_err(|e| match e {
            HistoryError::ForeignCursor => CliError::Input(format!(
                "that cursor belongs to another conversation than {}; \
                 leave out --before for the newest page",
                target.label
            )),
            HistoryError::Store(e) => error::store(e),
            other => CliError::Other(other.to_string()),
        })?;
    let older = page.older.as_ref().map(|c| c.to_text());
    if args.json {
        let value = json!({
            "type": "history",
            "conversation": names.conversation(&target.conversation),
            "messages": page.messages.iter().map(message_json).collect::<Vec<_>>(),
            "older": older,
        });
        println!("{value}");
        return Ok(());
    }
    if page.messages.is_empty() {
        eprintln!("No messages with {} stored here.", target.label);
    }
    for snapshot in &page.messages {
        println!("{}", message_line(snapshot));
    }
    if let Some(cursor) = older {
        println!("older: microbot history {} --before {cursor}", args.target);
    }
    Ok(())
}

/// One message as JSON.
fn message_json(snapshot: &MessageSnapshot) -> Value {
    let (text, sent_at_ms, edited) = match &snapshot.status {
        MessageStatus::Visible {
            text,
            sent_at_ms,
            edited,
        } => (Some(text.as_str()), Some(*sent_at_ms), edited.is_some()),
        _ => (None, None, false),
    };
    json!({
        "id": id_hex(&snapshot.message_id),
        "from": snapshot.author,
        "sent_at_ms": sent_at_ms,
        "text": text,
        "deleted": matches!(snapshot.status, MessageStatus::Deleted),
        "edited": edited,
        "reply_to": snapshot.reply_to.as_ref().map(id_hex),
        "file": snapshot.attachment.as_ref().map(|a| json!({
            "name": a.file_name,
            "size": a.size,
            "content_type": a.content_type,
        })),
        "delivery": snapshot.delivery.as_ref().map(|d| json!({
            "state": d.stage.name(),
            "delivered_to": d.delivered_to,
            "read_by": d.read_by,
            "server_timestamp_ms": d.server_timestamp_ms,
            "failure": d.failure.as_ref().map(|f| json!({"kind": f.kind, "reason": f.text})),
        })),
    })
}

/// One message as a line of text: `alice: hello  (id …)  [read by bob]`.
fn message_line(snapshot: &MessageSnapshot) -> String {
    let text = match &snapshot.status {
        MessageStatus::Visible { text, edited, .. } => {
            let mut text = text.clone();
            if edited.is_some() {
                text.push_str(" (edited)");
            }
            text
        }
        MessageStatus::Deleted => "(deleted)".to_owned(),
        MessageStatus::Pending => "…".to_owned(),
    };
    let body = render::body(&text, snapshot.attachment.as_ref(), &snapshot.message_id);
    let delivery = snapshot
        .delivery
        .as_ref()
        .map(|d| format!("  [{}]", delivery_text(d)))
        .unwrap_or_default();
    format!(
        "{}: {body}  (id {}){delivery}",
        snapshot.author,
        id_hex(&snapshot.message_id)
    )
}

/// `queued`, `sent`, `delivered to bob`, `delivered to bob, carol; read by
/// bob`, `failed: no account named frank`.
fn delivery_text(delivery: &DeliveryState) -> String {
    let mut parts = Vec::new();
    if !delivery.delivered_to.is_empty() {
        parts.push(format!("delivered to {}", delivery.delivered_to.join(", ")));
    }
    if !delivery.read_by.is_empty() {
        parts.push(format!("read by {}", delivery.read_by.join(", ")));
    }
    if let Some(failure) = &delivery.failure {
        format!("failed: {}", failure.text)
    } else if parts.is_empty() {
        delivery.stage.name().to_owned()
    } else {
        parts.join("; ")
    }
}
