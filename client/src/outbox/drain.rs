//! Draining the outbox over the connection: the shell around `plan`. It
//! reads the queued rows, asks the plan what to do with each, stops at a
//! queued file whose staging copy needs uploading (the connection task
//! runs `upload_file`, attachments/upload.rs, beside its other work, then
//! drains again), sends over
//! the connection (sessions.rs for 1:1, groups/send.rs for groups) and
//! hands the answer back to the plan, then tells the application what the
//! plan decided (only about rows the application queued). Not owned
//! here: the decisions (plan.rs).

use crate::account_state::Inner;
use crate::attachments::upload::{Uploaded, remove_copy, upload_queued};
use crate::events::Conversation;
use crate::groups::send::send_group;
use crate::sessions::{SendFailure, Stored, ensure_contact_devices, send_direct};
use crate::store::{OutboxRow, PendingUpload};
use crate::transport::Connection;
use microbot_protocol::content::Content;

use super::plan::{Answer, DrainPlan, NextStep};
use crate::error::Interrupted;

/// How a pass over the outbox ended.
pub(crate) enum Drained {
    /// Every row that could leave left.
    Done,
    /// This file message waits for its upload, which the caller runs
    /// beside the connection's other work ([`upload_file`]) so messages
    /// keep arriving meanwhile; the rows after it wait for it.
    Upload(Box<QueuedFile>),
}

/// A queued file message whose staging copy is not uploaded yet.
pub(crate) struct QueuedFile {
    row: OutboxRow,
    upload: PendingUpload,
    content: Content,
}

/// Sends queued contents in order; a destination whose safety number
/// changed is skipped (its sends wait) without holding up the others.
/// Stops at a file message that still needs its upload
/// ([`Drained::Upload`]), and at the first connection or store failure,
/// leaving that row queued.
pub(crate) async fn drain(inner: &Inner, conn: &Connection) -> Result<Drained, Interrupted> {
    let rows = inner
        .store
        .tx(|tx| tx.outbox())
        .map_err(Interrupted::Store)?;
    let mut plan = DrainPlan::new();
    for row in rows {
        let (step, upload) = inner
            .store
            .tx(|tx| Ok((plan.next(tx, &row)?, tx.pending_upload(&row.message_id)?)))
            .map_err(Interrupted::Store)?;
        let (conversation, content) = match step {
            NextStep::Wait => continue,
            NextStep::Dropped(events) => {
                if let Some(upload) = &upload {
                    remove_copy(&inner.store, &upload.staging).await;
                }
                events.into_iter().for_each(|e| inner.events.emit(e));
                continue;
            }
            NextStep::Send {
                conversation,
                content,
            } => (conversation, content),
        };
        // A file for one contact: an unknown account, or one without
        // usable devices, fails before the upload rather than after it.
        if let Some(upload) = &upload
            && let Conversation::Direct(to) = &conversation
            && *to != inner.me.username
            && let Err(failure) =
                ensure_contact_devices(inner.local(), inner.config.device_refresh, conn, to).await
        {
            let answer = answer_of(Err(failure));
            let dropped = matches!(answer, Answer::Refused(_));
            let events = inner
                .store
                .tx(|tx| Ok(plan.answered(tx, &row, &content, answer)))
                .map_err(Interrupted::Store)??;
            if dropped {
                remove_copy(&inner.store, &upload.staging).await;
            }
            events.into_iter().for_each(|e| inner.events.emit(e));
            continue;
        }
        // A file message first uploads its staging copy, in its place in
        // the queue, so what was queued after it cannot overtake it.
        if let Some(upload) = upload {
            return Ok(Drained::Upload(Box::new(QueuedFile {
                row,
                upload,
                content: *content,
            })));
        }
        let sent = match &conversation {
            Conversation::Direct(to) => send_direct(inner, conn, to, &content).await,
            Conversation::Group(id) => send_group(inner, conn, *id, &content).await,
        };
        let answer = answer_of(sent);
        let events = inner
            .store
            .tx(|tx| Ok(plan.answered(tx, &row, &content, answer)))
            .map_err(Interrupted::Store)??;
        events.into_iter().for_each(|e| inner.events.emit(e));
    }
    Ok(Drained::Done)
}

/// Uploads the staging copy of `file`; the row then carries the complete
/// file pointer and leaves with the next pass, which this wakes. A
/// refusal drops the row and tells the application, as a refused send.
pub(crate) async fn upload_file(
    inner: &Inner,
    conn: &Connection,
    file: QueuedFile,
) -> Result<(), Interrupted> {
    let QueuedFile {
        row,
        upload,
        content,
    } = file;
    match upload_queued(inner, conn, &row, &upload, content.clone()).await? {
        Uploaded::Ready => {}
        Uploaded::Refused(reason) => {
            let mut plan = DrainPlan::new();
            let events = inner
                .store
                .tx(|tx| Ok(plan.answered(tx, &row, &content, Answer::Refused(reason))))
                .map_err(Interrupted::Store)??;
            remove_copy(&inner.store, &upload.staging).await;
            events.into_iter().for_each(|e| inner.events.emit(e));
        }
    }
    inner.outbox_wake.notify_one();
    Ok(())
}

/// The send's result as the plan's plain answer.
fn answer_of(sent: Result<Stored, SendFailure>) -> Answer {
    match sent {
        Ok(stored) => Answer::Stored {
            server_timestamp_ms: stored.server_timestamp_ms,
            skipped_device_ids: stored.skipped_device_ids,
        },
        Err(SendFailure::Blocked) => Answer::Blocked,
        Err(SendFailure::Permanent(reason)) => Answer::Refused(reason),
        Err(SendFailure::Transport(error)) => Answer::ConnectionFailed(error),
        Err(SendFailure::Store(error)) => Answer::StoreFailed(error),
    }
}
