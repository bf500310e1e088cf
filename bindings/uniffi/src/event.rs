//! Events as a UniFFI enum (a sealed class in Kotlin, an enum in Swift, a
//! class per variant in Python). Conversations are keys: `u:<username>`
//! or `g:<group id hex>`; message ids are 32 hex digits.

use microbot_client::{ConnectionState, MessageIdText as _, ReceiptKind};

/// What changed in a group (the `update` of [`Event::GroupChanged`]).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum GroupUpdate {
    /// The group was created by `by` with this account as a member.
    Created {
        /// The creator.
        by: String,
        /// Its name.
        name: String,
    },
    /// These accounts joined (possibly this one).
    MembersAdded {
        /// Who joined.
        usernames: Vec<String>,
    },
    /// These accounts were removed by an admin (possibly this one: the
    /// group is then inactive).
    MembersRemoved {
        /// Who was removed.
        usernames: Vec<String>,
    },
    /// An account left the group (possibly this one).
    Left {
        /// Who left.
        username: String,
    },
    /// The group's name changed.
    Renamed {
        /// The new name.
        name: String,
    },
    /// Admin roles changed.
    RolesChanged,
    /// A kind of change newer than this binding; the group's state is
    /// current (read it again).
    Unrecognised,
}

impl From<microbot_client::GroupUpdate> for GroupUpdate {
    fn from(update: microbot_client::GroupUpdate) -> Self {
        use microbot_client::GroupUpdate as U;
        match update {
            U::Created { by, name } => GroupUpdate::Created { by, name },
            U::MembersAdded { usernames } => GroupUpdate::MembersAdded { usernames },
            U::MembersRemoved { usernames } => GroupUpdate::MembersRemoved { usernames },
            U::Left { username } => GroupUpdate::Left { username },
            U::Renamed { name } => GroupUpdate::Renamed { name },
            U::RolesChanged => GroupUpdate::RolesChanged,
            _ => GroupUpdate::Unrecognised,
        }
    }
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    /// A text or file message.
    Message {
        /// Where.
        conversation: String,
        /// The author.
        author: String,
        /// The message id.
        message_id: String,
        /// The author's clock, ms since the epoch.
        sent_at_ms: u64,
        /// The text (for a file: its caption).
        text: String,
        /// The file's suggested name, when the message carries a file.
        file_name: Option<String>,
        /// The file's size in bytes, when the message carries a file.
        file_size: Option<u64>,
    },
    /// A message was edited; `text` is the text to show now.
    Edited {
        /// Where.
        conversation: String,
        /// The author.
        author: String,
        /// The edited message.
        message_id: String,
        /// The converged text.
        text: String,
    },
    /// A message was deleted by its author.
    Deleted {
        /// Where.
        conversation: String,
        /// The author.
        author: String,
        /// The deleted message.
        message_id: String,
    },
    /// A reaction was added or withdrawn.
    Reaction {
        /// Where.
        conversation: String,
        /// Who reacted.
        from: String,
        /// The message reacted to.
        message_id: String,
        /// The emoji.
        emoji: String,
        /// True when withdrawn.
        removed: bool,
    },
    /// A delivery or read receipt.
    Receipt {
        /// Where.
        conversation: String,
        /// Who sent it.
        from: String,
        /// True: read; false: delivered.
        read: bool,
        /// The messages concerned.
        message_ids: Vec<String>,
    },
    /// Someone started or stopped typing.
    Typing {
        /// Where.
        conversation: String,
        /// Who.
        from: String,
        /// Started (true) or stopped.
        started: bool,
    },
    /// A group changed (members, roles, name).
    GroupChanged {
        /// The group's conversation key.
        conversation: String,
        /// Its version now.
        version: u64,
        /// What changed.
        update: GroupUpdate,
    },
    /// A message the application sent left the outbox: the server stored
    /// it. Not for what the library sends by itself (automatic delivery
    /// receipts, group changes).
    Sent {
        /// The message.
        message_id: String,
        /// The server's time stamp.
        server_timestamp_ms: u64,
    },
    /// A group message skipped these members' full queues.
    NotDelivered {
        /// The message.
        message_id: String,
        /// The members concerned.
        usernames: Vec<String>,
    },
    /// A message the application sent was dropped from the outbox.
    SendFailed {
        /// The message.
        message_id: String,
        /// Why, for people.
        reason: String,
        /// Why, for programs: a stable snake-case name (`unknown_account`,
        /// `no_devices`, `keys_refused`, `devices_keep_changing`,
        /// `group_devices_keep_changing`, `unknown_group`,
        /// `not_group_member`, `sender_key_exhausted`, `server_refused`,
        /// `request_failed`, `unknown_destination`; later versions may add
        /// others).
        reason_kind: String,
    },
    /// The connection state changed: `connecting`, `connected`,
    /// `disconnected`, `refused` or `stopped`.
    Connection {
        /// The state's name.
        state: String,
        /// Why (for `disconnected` and `refused`).
        reason: Option<String>,
    },
    /// A contact's identity key changed; sending to them is blocked until
    /// acknowledged.
    SafetyNumberChanged {
        /// The contact.
        username: String,
        /// The new safety number.
        safety_number: String,
    },
    /// An envelope could not be decrypted.
    DecryptionFailed {
        /// Claimed sender.
        sender: String,
        /// Why.
        reason: String,
    },
    /// Prekeys were uploaded.
    PrekeysRefilled {
        /// How many.
        uploaded: u32,
    },
    /// A contact has a new device.
    DeviceAdded {
        /// Whose.
        username: String,
        /// Its id.
        device_id: u64,
    },
    /// A kind of event newer than this binding (update the binding to
    /// receive its fields).
    Unrecognised {
        /// The SDK's name for it (`microbot_client::Event::kind`).
        kind: String,
    },
}

impl From<microbot_client::Event> for Event {
    fn from(event: microbot_client::Event) -> Self {
        use microbot_client::Event as E;
        match event {
            E::Message(m) => Event::Message {
                conversation: m.conversation.key(),
                author: m.author,
                message_id: m.message_id.to_text(),
                sent_at_ms: m.sent_at_ms,
                text: m.text,
                file_name: m.attachment.as_ref().map(|a| a.file_name.clone()),
                file_size: m.attachment.as_ref().map(|a| a.size),
            },
            E::Edited {
                conversation,
                author,
                target,
                text,
            } => Event::Edited {
                conversation: conversation.key(),
                author,
                message_id: target.to_text(),
                text,
            },
            E::Deleted {
                conversation,
                author,
                target,
            } => Event::Deleted {
                conversation: conversation.key(),
                author,
                message_id: target.to_text(),
            },
            E::Reaction {
                conversation,
                from,
                target,
                emoji,
                removed,
            } => Event::Reaction {
                conversation: conversation.key(),
                from,
                message_id: target.to_text(),
                emoji,
                removed,
            },
            E::Receipt {
                conversation,
                from,
                kind,
                message_ids,
            } => Event::Receipt {
                conversation: conversation.key(),
                from,
                read: kind == ReceiptKind::Read,
                message_ids: message_ids.iter().map(hex::encode).collect(),
            },
            E::Typing {
                conversation,
                from,
                started,
            } => Event::Typing {
                conversation: conversation.key(),
                from,
                started,
            },
            E::GroupChanged {
                group_id,
                version,
                update,
            } => Event::GroupChanged {
                conversation: format!("g:{group_id}"),
                version,
                update: update.into(),
            },
            E::Sent {
                message_id,
                server_timestamp_ms,
            } => Event::Sent {
                message_id: message_id.to_text(),
                server_timestamp_ms,
            },
            E::NotDelivered {
                message_id,
                usernames,
                ..
            } => Event::NotDelivered {
                message_id: message_id.to_text(),
                usernames,
            },
            E::SendFailed { message_id, reason } => Event::SendFailed {
                message_id: message_id.to_text(),
                reason: reason.to_string(),
                reason_kind: reason.kind().to_owned(),
            },
            E::Connection(state) => {
                let (state, reason) = match state {
                    ConnectionState::Connecting => ("connecting", None),
                    ConnectionState::Connected => ("connected", None),
                    ConnectionState::CaughtUp => ("caught_up", None),
                    ConnectionState::Disconnected { reason, .. } => ("disconnected", Some(reason)),
                    ConnectionState::Refused { reason } => ("refused", Some(reason)),
                    ConnectionState::Stopped => ("stopped", None),
                    _ => ("unknown", None),
                };
                Event::Connection {
                    state: state.to_owned(),
                    reason,
                }
            }
            E::SafetyNumberChanged {
                username,
                safety_number,
            } => Event::SafetyNumberChanged {
                username,
                safety_number: safety_number.to_string(),
            },
            E::DecryptionFailed { sender, reason, .. } => {
                Event::DecryptionFailed { sender, reason }
            }
            E::PrekeysRefilled { uploaded } => Event::PrekeysRefilled { uploaded },
            E::DeviceAdded {
                username,
                device_id,
            } => Event::DeviceAdded {
                username,
                device_id,
            },
            other => Event::Unrecognised {
                kind: other.kind().to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_send_carries_its_reason_and_its_kind() {
        let event = Event::from(microbot_client::Event::SendFailed {
            message_id: [1; 16],
            reason: microbot_client::SendFailureReason::UnknownAccount {
                username: "frank".into(),
            },
        });
        assert_eq!(
            event,
            Event::SendFailed {
                message_id: "01".repeat(16),
                reason: "no account named frank".into(),
                reason_kind: "unknown_account".into(),
            }
        );
    }
}
