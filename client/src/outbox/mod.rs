//! The outbox (SPEC.md §12.7 on the wire, DESIGN "client SDK"): every send
//! is first stored, in order, with our own copy in history (this file), and
//! leaves when connected: `plan` decides, without I/O, which row goes next
//! and what each answer means; `drain` carries that out over the
//! connection. Checks made before anything is stored: the content is valid
//! (§11.2), the 1:1 contact's safety number is not waiting for
//! acknowledgement, the group is known and we are a member. Each row
//! records who queued it ([`QueuedBy`]): only the application's sends are
//! announced when they leave or fail. A file message waits in its row for
//! its upload ([`queue_upload`]): the drain uploads the staging copy when
//! the row comes, so nothing queued after it overtakes it.
//! Not owned here: encryption and the actual send (sessions.rs, groups/).

mod drain;
mod plan;

pub(crate) use drain::{Drained, QueuedFile, drain, upload_file};

use microbot_protocol::MessageId;
use microbot_protocol::content::Content;
use prost::Message as _;

use crate::account_state::Inner;
use crate::auth::valid_username;
use crate::error::SendError;
use crate::events::Conversation;
use crate::messages;
use crate::store::{PendingUpload, Tx};

/// Who queued a send, which decides whether its fate is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuedBy {
    /// The application, through the public API: its id was returned to it,
    /// so `Sent`, `NotDelivered` and `SendFailed` name it (a typing
    /// indicator only in `SendFailed`).
    App,
    /// The SDK by itself (an automatic delivery receipt, a group control
    /// message): the application never saw the id; a failure is logged.
    Sdk,
}

/// Queues `content` for `conversation`, keeping our own copy in history
/// (not for typing indicators and group control messages). Group
/// contents get the conversation's `group_id`.
pub(crate) fn queue(
    inner: &Inner,
    conversation: &Conversation,
    content: Content,
    queued_by: QueuedBy,
) -> Result<MessageId, SendError> {
    push(inner, conversation, content, queued_by, None)
}

/// Queues the file message `content`, whose pointer has no attachment id
/// yet, behind its `upload` (whose staging copy is written): the drain
/// uploads the copy when its row comes, then sends the message (drain.rs).
/// Its place in the queue is taken now, so what is queued after it to
/// the same conversation leaves after it.
pub(crate) fn queue_upload(
    inner: &Inner,
    conversation: &Conversation,
    content: Content,
    upload: &PendingUpload,
) -> Result<MessageId, SendError> {
    use microbot_protocol::content::content::Body;
    // Checked as it will leave: with an attachment id of the right size.
    let mut as_sent = content.clone();
    if let Some(Body::Attachment(pointer)) = as_sent.body.as_mut() {
        pointer.attachment_id = bytes::Bytes::from_static(&[0; 16]);
    }
    if let Conversation::Group(group) = conversation {
        as_sent = as_sent.in_group(*group.as_bytes());
    }
    as_sent.validate()?;
    push(inner, conversation, content, QueuedBy::App, Some(upload))
}

fn push(
    inner: &Inner,
    conversation: &Conversation,
    mut content: Content,
    queued_by: QueuedBy,
    upload: Option<&PendingUpload>,
) -> Result<MessageId, SendError> {
    use microbot_protocol::content::content::Body;
    let id = content.id().ok_or(SendError::UnknownMessage)?;
    if let Conversation::Group(group) = conversation {
        content = content.in_group(*group.as_bytes());
    }
    if upload.is_none() {
        content.validate()?;
    }
    let keep = !matches!(
        content.body,
        Some(Body::Typing(_) | Body::GroupChange(_) | Body::SenderKeyDistribution(_))
    );
    let announce = queued_by == QueuedBy::App;
    inner.store.tx(|tx| -> Result<(), SendError> {
        check_destination(tx, conversation)?;
        if keep {
            tx.insert_message(&messages::row_for(
                conversation,
                &inner.me.username,
                &content,
                id,
            ))?;
        }
        tx.push_outbox(&conversation.key(), &id, &content.encode_to_vec(), announce)?;
        if let Some(upload) = upload {
            tx.insert_upload(upload)?;
        }
        Ok(())
    })?;
    inner.outbox_wake.notify_one();
    Ok(id)
}

/// Refuses sends to a conversation we cannot write to.
pub(crate) fn check_destination(tx: &Tx<'_>, conversation: &Conversation) -> Result<(), SendError> {
    match conversation {
        Conversation::Direct(to) => {
            if !valid_username(to) {
                return Err(SendError::InvalidUsername);
            }
            if tx.contact(to)?.is_some_and(|c| c.pending.is_some()) {
                return Err(SendError::UntrustedIdentity {
                    username: to.clone(),
                });
            }
        }
        Conversation::Group(group) => match tx.group(group)? {
            None => return Err(SendError::UnknownGroup),
            Some(record) if !record.active => return Err(SendError::NotGroupMember),
            Some(_) => {}
        },
    }
    Ok(())
}
