//! Message plaintexts and the converged view of stored messages.
//!
//! The plaintext sealed by a pairwise session is the encoded `Content`
//! padded to its bucket (SPEC.md §11.3). The copy of a message sent to the
//! sender's own other devices is a `SyncMessage` whose `SentTranscript`
//! names the conversation and carries the content (§11.7). Envelopes queued
//! by older clients carried the destination instead as field 100 of the
//! content itself (`string sync_destination`); receivers still read that
//! legacy form, because such envelopes may wait in a server queue, but
//! nothing writes it any more. Both are honoured only when the envelope
//! comes from the receiver's own account.
//!
//! Views fold the original, edits and deletes of one message with the
//! protocol's convergence rules (SPEC.md §11.4), so every device shows the
//! same thing whatever order they arrived in. Not owned here: storage
//! (store/) and encryption (sessions.rs).

use std::fmt;

use bytes::Bytes;
use microbot_protocol::content::{AttachmentPointer, Content, content::Body};
use microbot_protocol::convergence::{MessageEvent, MessageState, MessageView, Original};
use microbot_protocol::{ContentError, MessageId, decode_content, padding};
use prost::Message as _;
use rand::Rng as _;
use zeroize::Zeroizing;

use crate::delivery::DeliveryState;
use crate::events::Conversation;
use crate::store::MessageRow;

/// Field number of the legacy sync destination that older clients appended
/// to own-device copies (read, never written; SPEC.md §11.7).
pub const SYNC_DESTINATION_FIELD: u32 = 100;

#[derive(Clone, PartialEq, prost::Message)]
struct SyncDestination {
    #[prost(string, tag = "100")]
    destination: String,
}

/// The padded plaintext of `content`.
pub(crate) fn encode_plaintext(content: &Content) -> Zeroizing<Vec<u8>> {
    let mut content = content.clone();
    content.padding = Bytes::new();
    let pad = padding::padding_len(content.encoded_len());
    content.padding = Bytes::from(vec![0u8; pad]);
    Zeroizing::new(content.encode_to_vec())
}

/// Decodes a plaintext into its content and the legacy field-100 sync
/// destination, if present.
pub(crate) fn decode_plaintext(bytes: &[u8]) -> Result<(Content, Option<String>), ContentError> {
    let content = decode_content(bytes)?;
    let destination = SyncDestination::decode(bytes)
        .ok()
        .map(|d| d.destination)
        .filter(|d| !d.is_empty());
    Ok((content, destination))
}

/// The message an edit, delete or reaction points at.
pub(crate) fn target_of(content: &Content) -> Option<MessageId> {
    let bytes = match content.body.as_ref()? {
        Body::Edit(edit) => &edit.target_message_id,
        Body::Delete(delete) => &delete.target_message_id,
        Body::Reaction(reaction) => &reaction.target_message_id,
        _ => return None,
    };
    <[u8; 16]>::try_from(bytes.as_ref()).ok()
}

/// The store row for a content.
pub(crate) fn row_for(
    conversation: &Conversation,
    author: &str,
    content: &Content,
    message_id: MessageId,
) -> MessageRow {
    MessageRow {
        conversation: conversation.key(),
        author: author.to_owned(),
        message_id,
        target_id: target_of(content),
        kind: content
            .body
            .as_ref()
            .map_or("unsupported", |b| b.kind_name())
            .to_owned(),
        sent_at_ms: content.sent_at_ms,
        received_at_ms: crate::now_ms(),
        content: Zeroizing::new(content.encode_to_vec()),
    }
}

/// What a message shows now.
#[derive(Clone, PartialEq, Eq)]
pub enum MessageStatus {
    /// Only edits arrived so far; the original is missing.
    Pending,
    /// Deleted by its author.
    Deleted,
    /// Visible with this text.
    Visible {
        /// The converged text (the winning edit's, else the original's).
        text: String,
        /// The original's time (sender's clock).
        sent_at_ms: u64,
        /// `(revision, edited_at_ms)` of the winning edit, if edited.
        edited: Option<(u64, u64)>,
    },
}

impl fmt::Debug for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageStatus::Pending => f.write_str("Pending"),
            MessageStatus::Deleted => f.write_str("Deleted"),
            MessageStatus::Visible {
                text,
                sent_at_ms,
                edited,
            } => f
                .debug_struct("Visible")
                .field("text_len", &text.len())
                .field("sent_at_ms", sent_at_ms)
                .field("edited", edited)
                .finish(),
        }
    }
}

/// One message as stored, with its converged state.
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub struct MessageSnapshot {
    /// Where it belongs.
    pub conversation: Conversation,
    /// Its author.
    pub author: String,
    /// Its id.
    pub message_id: MessageId,
    /// What it shows.
    pub status: MessageStatus,
    /// The message it replies to.
    pub reply_to: Option<MessageId>,
    /// Its file, if any.
    pub attachment: Option<AttachmentPointer>,
    /// How far it got, for a message this account wrote (queued, sent,
    /// delivered to, read by); `None` for a message someone else wrote:
    /// we do not track what happens to theirs.
    pub delivery: Option<DeliveryState>,
}

impl fmt::Debug for MessageSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageSnapshot")
            .field("conversation", &self.conversation)
            .field("author", &self.author)
            .field("message_id", &hex::encode(self.message_id))
            .field("status", &self.status)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// Folds the stored events of one message (`author`, `id`); `None` when
/// nothing about it is stored. The delivery state is left out (`None`):
/// it comes from the store's receipts and outbox (delivery.rs).
pub(crate) fn fold(author: &str, id: &MessageId, rows: &[MessageRow]) -> Option<MessageSnapshot> {
    let mut state = MessageState::new();
    let mut conversation = None;
    let mut reply_to = None;
    let mut attachment = None;
    for row in rows {
        let Ok(content) = Content::decode(row.content.as_slice()) else {
            continue;
        };
        let event = match content.body.as_ref() {
            Some(Body::Attachment(pointer)) if row.message_id == *id => {
                attachment = Some(pointer.clone());
                Some(MessageEvent::Original(Original {
                    sent_at_ms: content.sent_at_ms,
                    text: pointer.caption.clone(),
                }))
            }
            Some(Body::Text(text)) if row.message_id == *id => {
                reply_to = text
                    .reply_to
                    .as_ref()
                    .and_then(|r| <[u8; 16]>::try_from(r.message_id.as_ref()).ok());
                MessageEvent::from_content(&content).map(|(_, event)| event)
            }
            _ => MessageEvent::from_content(&content)
                .filter(|(target, _)| target == id)
                .map(|(_, event)| event),
        };
        if let Some(event) = event {
            conversation.get_or_insert_with(|| row.conversation.clone());
            state.apply(event);
        }
    }
    let conversation = Conversation::from_key(&conversation?)?;
    let status = match state.view() {
        MessageView::Pending => MessageStatus::Pending,
        MessageView::Deleted { .. } => MessageStatus::Deleted,
        MessageView::Visible {
            text,
            sent_at_ms,
            edited,
        } => MessageStatus::Visible {
            text: text.to_owned(),
            sent_at_ms,
            edited,
        },
    };
    Some(MessageSnapshot {
        conversation,
        author: author.to_owned(),
        message_id: *id,
        status,
        reply_to,
        attachment,
        delivery: None,
    })
}

/// The highest revision of the message known from `rows` (0: never edited).
pub(crate) fn latest_revision(id: &MessageId, rows: &[MessageRow]) -> u64 {
    let mut state = MessageState::new();
    for row in rows {
        if let Ok(content) = Content::decode(row.content.as_slice())
            && let Some((target, event)) = MessageEvent::from_content(&content)
            && target == *id
        {
            state.apply(event);
        }
    }
    state.latest_revision()
}

/// A fresh random 16-byte message id.
pub(crate) fn new_id() -> MessageId {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    id
}
