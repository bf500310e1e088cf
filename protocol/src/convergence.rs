//! Edit/delete convergence: SPEC.md §11.4.
//!
//! Every device of every participant receives the original, its edits and
//! its delete in whatever order the network delivers them; all must show the
//! same thing. [`MessageState`] is a join-semilattice: applying the same set
//! of events in any order (duplicates included) gives an equal state.
//!
//! A message is named by its author's username and its `message_id`; the
//! caller routes an `Edit` or `Delete` received from account A with target T
//! to the state of (A, T), so only the author's account can edit or delete
//! its messages, by construction. Rules:
//! 1. A delete wins over everything: once deleted, the text and all edits are
//!    dropped and later events change nothing.
//! 2. Among edits, the greatest by (`revision`, `edited_at_ms`, edit
//!    `message_id` bytes, text bytes) wins; any edit beats the original.
//!    `revision` comes first because it follows causality (an editor sets it
//!    to one more than the highest revision it has seen) while clocks of two
//!    devices may disagree.
//! 3. An edit that arrives before its original is kept and shown once the
//!    original arrives.
//! 4. Two originals with the same name (a sender bug) resolve to the greater
//!    by (`sent_at_ms`, text bytes).
//!
//! Pure: no clock, no I/O, no protobuf types in the state (the
//! [`MessageEvent::from_content`] adapter converts at the edge).

use std::cmp::Ordering;
use std::fmt;

use crate::content::{Content, content::Body};
use crate::content_rules::{ID_LEN, MessageId};

/// The original text message.
#[derive(Clone, PartialEq, Eq)]
pub struct Original {
    /// `Content.sent_at_ms` of the original.
    pub sent_at_ms: u64,
    /// Its text.
    pub text: String,
}

/// One edit of a message.
#[derive(Clone, PartialEq, Eq)]
pub struct EditVersion {
    /// `Edit.revision`.
    pub revision: u64,
    /// `Content.sent_at_ms` of the edit.
    pub edited_at_ms: u64,
    /// `Content.message_id` of the edit.
    pub edit_id: MessageId,
    /// The new text.
    pub text: String,
}

impl EditVersion {
    fn key(&self) -> (u64, u64, &MessageId, &str) {
        (self.revision, self.edited_at_ms, &self.edit_id, &self.text)
    }
}

/// Something that happened to one message.
#[derive(Clone, PartialEq, Eq)]
pub enum MessageEvent {
    /// The message itself arrived.
    Original(Original),
    /// An edit arrived.
    Edit(EditVersion),
    /// A delete arrived.
    Delete,
}

/// The converged state of one message.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    inner: Inner,
}

#[derive(Clone, PartialEq, Eq)]
enum Inner {
    Live {
        original: Option<Original>,
        best_edit: Option<EditVersion>,
    },
    Deleted {
        original_seen: bool,
    },
}

impl Default for Inner {
    fn default() -> Self {
        Inner::Live {
            original: None,
            best_edit: None,
        }
    }
}

/// What to show for a message. (`Debug` leaves the text out.)
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum MessageView<'a> {
    /// No original yet (there may be edits waiting for it).
    Pending,
    /// The message was deleted by its author.
    Deleted {
        /// Whether the original had arrived (a client may show "message
        /// deleted" only for messages it had shown).
        original_seen: bool,
    },
    /// The message is visible.
    Visible {
        /// The text to show: the winning edit's, else the original's.
        text: &'a str,
        /// `sent_at_ms` of the original.
        sent_at_ms: u64,
        /// The winning edit's revision and time, if the message was edited.
        edited: Option<(u64, u64)>,
    },
}

impl MessageState {
    /// The state of a message nothing has been received for.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in. Commutative, associative and idempotent.
    pub fn apply(&mut self, event: MessageEvent) {
        match (&mut self.inner, event) {
            (Inner::Deleted { original_seen }, MessageEvent::Original(_)) => *original_seen = true,
            (Inner::Deleted { .. }, _) => {}
            (Inner::Live { original, .. }, MessageEvent::Delete) => {
                self.inner = Inner::Deleted {
                    original_seen: original.is_some(),
                };
            }
            (Inner::Live { original, .. }, MessageEvent::Original(new)) => {
                let replace = original.as_ref().is_none_or(|old| {
                    (new.sent_at_ms, new.text.as_str()).cmp(&(old.sent_at_ms, old.text.as_str()))
                        == Ordering::Greater
                });
                if replace {
                    *original = Some(new);
                }
            }
            (Inner::Live { best_edit, .. }, MessageEvent::Edit(new)) => {
                if best_edit.as_ref().is_none_or(|old| new.key() > old.key()) {
                    *best_edit = Some(new);
                }
            }
        }
    }

    /// Folds in all of another state's knowledge (the same as applying every
    /// event that produced it).
    pub fn merge(&mut self, other: MessageState) {
        match other.inner {
            Inner::Live {
                original,
                best_edit,
            } => {
                if let Some(original) = original {
                    self.apply(MessageEvent::Original(original));
                }
                if let Some(edit) = best_edit {
                    self.apply(MessageEvent::Edit(edit));
                }
            }
            Inner::Deleted { original_seen } => {
                let seen_here = match &self.inner {
                    Inner::Live { original, .. } => original.is_some(),
                    Inner::Deleted { original_seen } => *original_seen,
                };
                self.inner = Inner::Deleted {
                    original_seen: original_seen || seen_here,
                };
            }
        }
    }

    /// What to show.
    pub fn view(&self) -> MessageView<'_> {
        match &self.inner {
            Inner::Deleted { original_seen } => MessageView::Deleted {
                original_seen: *original_seen,
            },
            Inner::Live { original: None, .. } => MessageView::Pending,
            Inner::Live {
                original: Some(original),
                best_edit,
            } => MessageView::Visible {
                text: best_edit.as_ref().map_or(&original.text, |edit| &edit.text),
                sent_at_ms: original.sent_at_ms,
                edited: best_edit
                    .as_ref()
                    .map(|edit| (edit.revision, edit.edited_at_ms)),
            },
        }
    }

    /// The highest revision known (0 for none), so an editor can set the next
    /// edit's `revision` to one more than this.
    pub fn latest_revision(&self) -> u64 {
        match &self.inner {
            Inner::Live {
                best_edit: Some(edit),
                ..
            } => edit.revision,
            _ => 0,
        }
    }
}

impl MessageEvent {
    /// The event a received `Content` is for the convergence of one message,
    /// and that message's id: a `Text` is the original of its own
    /// `message_id`; an `Edit` or `Delete` targets `target_message_id`.
    /// `None` for every other body, or when an id is not 16 bytes.
    ///
    /// The caller pairs the id with the sender's username (module docs).
    pub fn from_content(content: &Content) -> Option<(MessageId, MessageEvent)> {
        match content.body.as_ref()? {
            Body::Text(text) => Some((
                id(&content.message_id)?,
                MessageEvent::Original(Original {
                    sent_at_ms: content.sent_at_ms,
                    text: text.text.clone(),
                }),
            )),
            Body::Edit(edit) => Some((
                id(&edit.target_message_id)?,
                MessageEvent::Edit(EditVersion {
                    revision: edit.revision,
                    edited_at_ms: content.sent_at_ms,
                    edit_id: id(&content.message_id)?,
                    text: edit.text.clone(),
                }),
            )),
            Body::Delete(delete) => Some((id(&delete.target_message_id)?, MessageEvent::Delete)),
            _ => None,
        }
    }
}

fn id(bytes: &[u8]) -> Option<MessageId> {
    <[u8; ID_LEN]>::try_from(bytes).ok()
}

// Manual Debug impls: message text is plaintext and stays out of logs.

impl fmt::Debug for Original {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Original")
            .field("sent_at_ms", &self.sent_at_ms)
            .field("text_len", &self.text.len())
            .finish()
    }
}

impl fmt::Debug for EditVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EditVersion")
            .field("revision", &self.revision)
            .field("edited_at_ms", &self.edited_at_ms)
            .field("edit_id", &self.edit_id)
            .field("text_len", &self.text.len())
            .finish()
    }
}

impl fmt::Debug for MessageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageEvent::Original(original) => f.debug_tuple("Original").field(original).finish(),
            MessageEvent::Edit(edit) => f.debug_tuple("Edit").field(edit).finish(),
            MessageEvent::Delete => f.write_str("Delete"),
        }
    }
}

impl fmt::Debug for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Live {
                original,
                best_edit,
            } => f
                .debug_struct("MessageState::Live")
                .field("original", original)
                .field("best_edit", best_edit)
                .finish(),
            Inner::Deleted { original_seen } => f
                .debug_struct("MessageState::Deleted")
                .field("original_seen", original_seen)
                .finish(),
        }
    }
}

impl fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageView::Pending => f.write_str("Pending"),
            MessageView::Deleted { original_seen } => f
                .debug_struct("Deleted")
                .field("original_seen", original_seen)
                .finish(),
            MessageView::Visible {
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
