//! What the SDK tells the application: an async stream of [`Event`]s, and
//! the public names of conversations and messages.
//!
//! Events are emitted only after what they report is stored, so an
//! application that crashes can rebuild its view from the store
//! ([`crate::Account::history`], [`crate::Account::message`]). Not owned
//! here: producing them (sync.rs).

use std::fmt;

use microbot_crypto::fingerprint::SafetyNumber;
use microbot_protocol::MessageId;
use tokio::sync::mpsc;

use crate::groups::{GroupId, GroupUpdate};
use crate::send_failure::SendFailureReason;

/// A conversation: with one account (all its devices), or a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// 1:1 with the account of this username.
    Direct(String),
    /// A group.
    Group(GroupId),
}

impl Conversation {
    /// The stable text key used in the store (`u:<username>` or `g:<hex id>`).
    pub fn key(&self) -> String {
        match self {
            Conversation::Direct(username) => format!("u:{username}"),
            Conversation::Group(id) => format!("g:{id}"),
        }
    }

    /// Parses [`Conversation::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        if let Some(username) = key.strip_prefix("u:") {
            return Some(Conversation::Direct(username.to_owned()));
        }
        let id = hex::decode(key.strip_prefix("g:")?).ok()?;
        Some(Conversation::Group(GroupId::from_slice(&id)?))
    }
}

/// The state of the connection to the server.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting (first attempt or after a failure).
    Connecting,
    /// Logged in, prekeys published: requests that need the connection
    /// work ([`crate::Account::wait_connected`] returns). The messages
    /// queued while offline follow, then [`ConnectionState::CaughtUp`].
    Connected,
    /// The backlog after [`ConnectionState::Connected`] is in: queued
    /// messages stored and announced, missed group changes applied, the
    /// outbox drained.
    CaughtUp,
    /// Not connected; the next attempt is in `retry_in_ms`.
    Disconnected {
        /// Why the last attempt or connection ended.
        reason: String,
        /// Delay before the next attempt.
        retry_in_ms: u64,
    },
    /// The server refused this device for good (removed, unknown); the
    /// account stops reconnecting.
    Refused {
        /// Why.
        reason: String,
    },
    /// Stopped by the application.
    Stopped,
}

/// A text or file message as received (or as sent from another of our devices).
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// Where it belongs.
    pub conversation: Conversation,
    /// Username of the author (ours for copies of our own sends).
    pub author: String,
    /// The author's device.
    pub author_device: u64,
    /// `Content.message_id`.
    pub message_id: MessageId,
    /// Sender's clock.
    pub sent_at_ms: u64,
    /// The text (for a file: its caption).
    pub text: String,
    /// The message it replies to, if any.
    pub reply_to: Option<MessageId>,
    /// A file, if the message carries one.
    pub attachment: Option<microbot_protocol::content::AttachmentPointer>,
}

impl fmt::Debug for IncomingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingMessage")
            .field("conversation", &self.conversation)
            .field("author", &self.author)
            .field("author_device", &self.author_device)
            .field("message_id", &hex::encode(self.message_id))
            .field("text_len", &self.text.len())
            .field("has_attachment", &self.attachment.is_some())
            .finish_non_exhaustive()
    }
}

/// Which receipt.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The messages reached a device of the sender of the receipt.
    Delivered,
    /// The sender of the receipt read the messages.
    Read,
}

/// How [`Event::DecryptionFailed`]'s reason starts when the message came
/// from a device the sender account's signed device list does not name
/// (SPEC.md §20.5): refused before decryption, nothing stored.
pub const UNLISTED_DEVICE: &str = "unlisted device";

/// Something the application should know about.
#[non_exhaustive]
#[derive(Clone)]
pub enum Event {
    /// A text or file message.
    Message(Box<IncomingMessage>),
    /// A message was edited; `text` is the converged text (SPEC.md §11.4).
    Edited {
        /// Where.
        conversation: Conversation,
        /// The author of the edited message.
        author: String,
        /// The edited message.
        target: MessageId,
        /// The text to show now.
        text: String,
    },
    /// A message was deleted by its author.
    Deleted {
        /// Where.
        conversation: Conversation,
        /// The author of the deleted message.
        author: String,
        /// The deleted message.
        target: MessageId,
    },
    /// A reaction was added or withdrawn.
    Reaction {
        /// Where.
        conversation: Conversation,
        /// Who reacted.
        from: String,
        /// The message reacted to.
        target: MessageId,
        /// The emoji.
        emoji: String,
        /// True when the reaction was withdrawn.
        removed: bool,
    },
    /// A delivery or read receipt.
    Receipt {
        /// Where.
        conversation: Conversation,
        /// Who sent the receipt.
        from: String,
        /// Which receipt.
        kind: ReceiptKind,
        /// The messages concerned.
        message_ids: Vec<MessageId>,
    },
    /// Someone started or stopped typing.
    Typing {
        /// Where.
        conversation: Conversation,
        /// Who.
        from: String,
        /// True: started; false: stopped.
        started: bool,
    },
    /// A group changed (membership, roles or name); see
    /// [`crate::Account::group`] for its state now.
    GroupChanged {
        /// The group.
        group_id: GroupId,
        /// Its version after the change.
        version: u64,
        /// What changed.
        update: GroupUpdate,
    },
    /// A message left the outbox: the server stored it for every recipient
    /// device. Only for messages the application sent (`send_text`,
    /// `react`, `mark_read`, `send_file`, …, never typing indicators):
    /// what the SDK sends by itself (automatic delivery receipts, group
    /// control messages) leaves without an event.
    Sent {
        /// The message.
        message_id: MessageId,
        /// The server's time stamp.
        server_timestamp_ms: u64,
    },
    /// A group message the server stored for every member device except
    /// these: their queues were full (SPEC.md §12.10), so they will not
    /// receive it. Follows the message's [`Event::Sent`] (so, like it, only
    /// for messages the application sent).
    NotDelivered {
        /// The message.
        message_id: MessageId,
        /// The members whose devices were skipped (those the group's key
        /// records name), each once, sorted.
        usernames: Vec<String>,
        /// The skipped recipient devices.
        device_ids: Vec<u64>,
    },
    /// A message the application sent could not be sent and was dropped
    /// from the outbox (only for ids [`Event::Sent`] would name).
    SendFailed {
        /// The message.
        message_id: MessageId,
        /// Why: match on it, or show it (`Display` is a sentence).
        reason: SendFailureReason,
    },
    /// The connection state changed.
    Connection(ConnectionState),
    /// The identity key of a contact changed. Sending to them is blocked
    /// until [`crate::Account::acknowledge_identity_change`].
    SafetyNumberChanged {
        /// The contact.
        username: String,
        /// The new safety number to compare with the contact.
        safety_number: SafetyNumber,
    },
    /// An envelope could not be decrypted and was dropped.
    DecryptionFailed {
        /// Claimed sender.
        sender: String,
        /// Claimed sender device.
        sender_device: u64,
        /// Why.
        reason: String,
    },
    /// One-time prekeys were uploaded to refill the server's stock.
    PrekeysRefilled {
        /// How many were uploaded.
        uploaded: u32,
    },
    /// A known contact (or this account) has a device this device had not
    /// seen: a newly linked one (SPEC.md §12.14). Messages now go to it too;
    /// it uses the account's identity, so the safety number is unchanged.
    DeviceAdded {
        /// Whose device.
        username: String,
        /// The new device's id.
        device_id: u64,
    },
}

impl Event {
    /// The event's variant name, stable across releases (`"Message"`,
    /// `"Receipt"`, …): for logs, metrics and bindings that meet a kind
    /// newer than themselves (the enum is `#[non_exhaustive]`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Message(_) => "Message",
            Event::Edited { .. } => "Edited",
            Event::Deleted { .. } => "Deleted",
            Event::Reaction { .. } => "Reaction",
            Event::Receipt { .. } => "Receipt",
            Event::Typing { .. } => "Typing",
            Event::GroupChanged { .. } => "GroupChanged",
            Event::Sent { .. } => "Sent",
            Event::NotDelivered { .. } => "NotDelivered",
            Event::SendFailed { .. } => "SendFailed",
            Event::Connection(_) => "Connection",
            Event::SafetyNumberChanged { .. } => "SafetyNumberChanged",
            Event::DecryptionFailed { .. } => "DecryptionFailed",
            Event::PrekeysRefilled { .. } => "PrekeysRefilled",
            Event::DeviceAdded { .. } => "DeviceAdded",
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Message(m) => f.debug_tuple("Message").field(m).finish(),
            Event::Edited {
                conversation,
                author,
                target,
                text,
            } => f
                .debug_struct("Edited")
                .field("conversation", conversation)
                .field("author", author)
                .field("target", &hex::encode(target))
                .field("text_len", &text.len())
                .finish(),
            Event::Deleted {
                conversation,
                author,
                target,
            } => f
                .debug_struct("Deleted")
                .field("conversation", conversation)
                .field("author", author)
                .field("target", &hex::encode(target))
                .finish(),
            Event::Reaction {
                conversation,
                from,
                target,
                removed,
                ..
            } => f
                .debug_struct("Reaction")
                .field("conversation", conversation)
                .field("from", from)
                .field("target", &hex::encode(target))
                .field("removed", removed)
                .finish_non_exhaustive(),
            Event::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            } => f
                .debug_struct("Receipt")
                .field("conversation", conversation)
                .field("from", from)
                .field("kind", kind)
                .field("count", &message_ids.len())
                .finish(),
            Event::Typing {
                conversation,
                from,
                started,
            } => f
                .debug_struct("Typing")
                .field("conversation", conversation)
                .field("from", from)
                .field("started", started)
                .finish(),
            Event::GroupChanged {
                group_id,
                version,
                update,
            } => f
                .debug_struct("GroupChanged")
                .field("group_id", group_id)
                .field("version", version)
                .field("update", update)
                .finish(),
            Event::Sent {
                message_id,
                server_timestamp_ms,
            } => f
                .debug_struct("Sent")
                .field("message_id", &hex::encode(message_id))
                .field("server_timestamp_ms", server_timestamp_ms)
                .finish(),
            Event::NotDelivered {
                message_id,
                usernames,
                device_ids,
            } => f
                .debug_struct("NotDelivered")
                .field("message_id", &hex::encode(message_id))
                .field("usernames", usernames)
                .field("device_ids", device_ids)
                .finish(),
            Event::SendFailed { message_id, reason } => f
                .debug_struct("SendFailed")
                .field("message_id", &hex::encode(message_id))
                .field("reason", reason)
                .finish(),
            Event::Connection(state) => f.debug_tuple("Connection").field(state).finish(),
            Event::SafetyNumberChanged { username, .. } => f
                .debug_struct("SafetyNumberChanged")
                .field("username", username)
                .finish_non_exhaustive(),
            Event::DecryptionFailed {
                sender,
                sender_device,
                reason,
            } => f
                .debug_struct("DecryptionFailed")
                .field("sender", sender)
                .field("sender_device", sender_device)
                .field("reason", reason)
                .finish(),
            Event::PrekeysRefilled { uploaded } => f
                .debug_struct("PrekeysRefilled")
                .field("uploaded", uploaded)
                .finish(),
            Event::DeviceAdded {
                username,
                device_id,
            } => f
                .debug_struct("DeviceAdded")
                .field("username", username)
                .field("device_id", device_id)
                .finish(),
        }
    }
}

/// The application's end of the event stream.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    pub(crate) fn channel() -> (EventSender, Self) {
        let sender = EventSender(std::sync::Mutex::new(Vec::new()));
        let events = sender.subscribe();
        (sender, events)
    }

    /// The next event; `None` once the account is dropped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready now.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// The underlying receiver (for `tokio::select!` or stream adapters).
    pub fn into_inner(self) -> mpsc::UnboundedReceiver<Event> {
        self.rx
    }
}

/// The sending side of every [`Events`] stream: how the account tells the
/// application. Each subscriber gets every event from its subscription
/// on, in order; a dropped stream is forgotten at the next event.
pub(crate) struct EventSender(std::sync::Mutex<Vec<mpsc::UnboundedSender<Event>>>);

impl EventSender {
    /// A new stream that receives every event from now on.
    pub(crate) fn subscribe(&self) -> Events {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers().push(tx);
        Events { rx }
    }

    /// Tells every subscriber (nothing happens once all dropped [`Events`]).
    pub(crate) fn emit(&self, event: Event) {
        let mut subscribers = self.subscribers();
        subscribers.retain(|tx| !tx.is_closed());
        if let Some((last, others)) = subscribers.split_last() {
            for tx in others {
                let _ = tx.send(event.clone());
            }
            let _ = last.send(event);
        }
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<Event>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
