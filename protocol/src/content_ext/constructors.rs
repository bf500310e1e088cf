//! Constructors for `Content` and its parts. They set fields only; call
//! [`Content::validate`] before sending and [`crate::padding::pad_to_bucket`]
//! last.

use bytes::Bytes;

use crate::content::{
    AttachmentPointer, CallSignal, Content, Delete, DeliveryReceipt, Edit, GroupChange,
    MiniappEvent, Reaction, ReadReceipt, ReplyTo, SenderKeyDistribution, SentTranscript,
    SyncMessage, Text, Typing, TypingAction, call_signal, content::Body, sent_transcript,
    sync_message,
};
use crate::content_rules::{ID_LEN, MessageId};

fn id_bytes(id: &MessageId) -> Bytes {
    Bytes::copy_from_slice(id)
}

impl Content {
    /// A `Content` with the given id, time and body; no group, no padding.
    pub fn new(message_id: MessageId, sent_at_ms: u64, body: Body) -> Self {
        Self {
            message_id: id_bytes(&message_id),
            sent_at_ms,
            body: Some(body),
            group_id: Bytes::new(),
            padding: Bytes::new(),
            profile_key: Bytes::new(),
        }
    }

    /// A text message.
    pub fn text(message_id: MessageId, sent_at_ms: u64, text: impl Into<String>) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::Text(Text {
                text: text.into(),
                reply_to: None,
            }),
        )
    }

    /// A text message replying to an earlier one.
    pub fn reply(
        message_id: MessageId,
        sent_at_ms: u64,
        text: impl Into<String>,
        reply_to: ReplyTo,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::Text(Text {
                text: text.into(),
                reply_to: Some(reply_to),
            }),
        )
    }

    /// Adds (`remove == false`) or withdraws an emoji reaction to `target`.
    pub fn reaction(
        message_id: MessageId,
        sent_at_ms: u64,
        target: MessageId,
        emoji: impl Into<String>,
        remove: bool,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::Reaction(Reaction {
                target_message_id: id_bytes(&target),
                emoji: emoji.into(),
                remove,
            }),
        )
    }

    /// Replaces the text of `target`; `revision` is one more than the highest
    /// revision of `target` the sender has seen (see
    /// [`crate::convergence::MessageState::latest_revision`]).
    pub fn edit(
        message_id: MessageId,
        sent_at_ms: u64,
        target: MessageId,
        revision: u64,
        text: impl Into<String>,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::Edit(Edit {
                target_message_id: id_bytes(&target),
                text: text.into(),
                revision,
            }),
        )
    }

    /// Deletes `target` for everyone.
    pub fn delete(message_id: MessageId, sent_at_ms: u64, target: MessageId) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::Delete(Delete {
                target_message_id: id_bytes(&target),
            }),
        )
    }

    /// A read receipt for `read` messages.
    pub fn read_receipt(
        message_id: MessageId,
        sent_at_ms: u64,
        read: impl IntoIterator<Item = MessageId>,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::ReadReceipt(ReadReceipt {
                message_ids: read.into_iter().map(|id| id_bytes(&id)).collect(),
            }),
        )
    }

    /// A delivery receipt for `delivered` messages.
    pub fn delivery_receipt(
        message_id: MessageId,
        sent_at_ms: u64,
        delivered: impl IntoIterator<Item = MessageId>,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::DeliveryReceipt(DeliveryReceipt {
                message_ids: delivered.into_iter().map(|id| id_bytes(&id)).collect(),
            }),
        )
    }

    /// A typing indicator.
    pub fn typing(message_id: MessageId, sent_at_ms: u64, action: TypingAction) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::Typing(Typing {
                action: action.into(),
            }),
        )
    }

    /// A file.
    pub fn attachment(message_id: MessageId, sent_at_ms: u64, pointer: AttachmentPointer) -> Self {
        Self::new(message_id, sent_at_ms, Body::Attachment(pointer))
    }

    /// A group change announcement; `group_id` is set from the change too.
    pub fn group_change(message_id: MessageId, sent_at_ms: u64, change: GroupChange) -> Self {
        let group_id = change.group_id.clone();
        let mut content = Self::new(message_id, sent_at_ms, Body::GroupChange(change));
        content.group_id = group_id;
        content
    }

    /// A sender key distribution for `group_id` (sent pairwise).
    pub fn sender_key_distribution(
        message_id: MessageId,
        sent_at_ms: u64,
        group_id: [u8; ID_LEN],
        distribution: impl Into<Bytes>,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::SenderKeyDistribution(SenderKeyDistribution {
                group_id: Bytes::copy_from_slice(&group_id),
                distribution: distribution.into(),
            }),
        )
    }

    /// A call signal of the call `call_id`.
    pub fn call_signal(
        message_id: MessageId,
        sent_at_ms: u64,
        call_id: [u8; ID_LEN],
        signal: call_signal::Signal,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::CallSignal(CallSignal {
                call_id: Bytes::copy_from_slice(&call_id),
                signal: Some(signal),
            }),
        )
    }

    /// An event of instance `instance_id` of miniapp `app_id` (§11.9); a
    /// miniapp event belongs in a group, so set `group_id` before sending.
    pub fn miniapp_event(
        message_id: MessageId,
        sent_at_ms: u64,
        app_id: impl Into<String>,
        instance_id: [u8; ID_LEN],
        payload: impl Into<Bytes>,
    ) -> Self {
        Self::new(
            message_id,
            sent_at_ms,
            Body::MiniappEvent(MiniappEvent {
                app_id: app_id.into(),
                instance_id: Bytes::copy_from_slice(&instance_id),
                payload: payload.into(),
            }),
        )
    }

    /// A sent-message transcript for our own other devices (§11.7): `sent`
    /// went to the 1:1 conversation with `destination_username`, or, when
    /// `sent.group_id` is set, to that group. The transcript carries `sent`
    /// without its padding.
    pub fn sync_sent(
        message_id: MessageId,
        sent_at_ms: u64,
        destination_username: &str,
        sent: &Content,
    ) -> Self {
        let mut inner = sent.clone();
        inner.padding = Bytes::new();
        let destination = if inner.group_id.is_empty() {
            sent_transcript::Destination::DestinationUsername(destination_username.to_owned())
        } else {
            sent_transcript::Destination::DestinationGroupId(inner.group_id.clone())
        };
        Self::new(
            message_id,
            sent_at_ms,
            Body::Sync(Box::new(SyncMessage {
                kind: Some(sync_message::Kind::Sent(Box::new(SentTranscript {
                    destination: Some(destination),
                    content: Some(Box::new(inner)),
                    timestamp_ms: sent_at_ms,
                }))),
            })),
        )
    }

    /// The same content, marked as belonging to the group `group_id`.
    pub fn in_group(mut self, group_id: [u8; ID_LEN]) -> Self {
        self.group_id = Bytes::copy_from_slice(&group_id);
        self
    }

    /// `message_id` as an array, or `None` if it is not 16 bytes.
    pub fn id(&self) -> Option<MessageId> {
        <[u8; ID_LEN]>::try_from(self.message_id.as_ref()).ok()
    }
}

impl ReplyTo {
    /// A quote of the message `message_id` by `author_username`.
    pub fn new(
        message_id: MessageId,
        author_username: impl Into<String>,
        snippet: impl Into<String>,
    ) -> Self {
        Self {
            message_id: id_bytes(&message_id),
            author_username: author_username.into(),
            snippet: snippet.into(),
        }
    }
}
