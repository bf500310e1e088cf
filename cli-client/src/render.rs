//! SDK events as the CLI prints them: one JSON object per event for
//! scripts (`recv --json`), or one line of text for people.
//!
//! JSON shape (every object has `type`; ids are 32 hex digits):
//! ```text
//! {"type":"message","conversation":C,"from":"alice","bot":false,"device":1,"id":"…","sent_at_ms":…,
//!  "text":"…","reply_to":"…"|null,"file":{"name","size","content_type"}|null}
//! {"type":"edited","conversation":C,"author":"…","target":"…","text":"…"}
//! {"type":"deleted","conversation":C,"author":"…","target":"…"}
//! {"type":"reaction","conversation":C,"from":"…","target":"…","emoji":"👍","removed":false}
//! {"type":"receipt","conversation":C,"from":"…","kind":"delivered"|"read","ids":["…"]}
//! {"type":"typing","conversation":C,"from":"…","started":true}
//! {"type":"group_changed","group":"…","version":3}
//! {"type":"sent","id":"…","server_timestamp_ms":…}
//! {"type":"send_failed","id":"…","reason":"…","reason_kind":"unknown_account"|"no_devices"|…}
//! {"type":"connection","state":"connected"|"connecting"|"disconnected"|"refused"|"stopped","reason":…}
//! {"type":"safety_number_changed","username":"…","safety_number":"12345 …"}
//! {"type":"decryption_failed","sender":"…","device":2,"reason":"…"}
//! {"type":"prekeys_refilled","uploaded":100}
//! C = {"type":"direct","username":"bob"} | {"type":"group","id":"…","name":"team"|null}
//! ```
//! `send_failed`: `reason` is a sentence for people; `reason_kind` is the
//! SDK's stable name of the cause for scripts to switch on
//! (`SendFailureReason::kind`: unknown_account, no_devices, keys_refused,
//! devices_keep_changing, group_devices_keep_changing, unknown_group,
//! not_group_member, sender_key_exhausted, server_refused, request_failed,
//! unknown_destination, and any newer one).
//! Not owned here: which events a command shows.

use std::collections::{HashMap, HashSet};

use microbot_client::{
    AttachmentPointer, ConnectionState, Conversation, Event, GroupId, GroupUpdate, MessageId,
    ReceiptKind,
};
use serde_json::{Value, json};

use crate::progress;
use crate::session::{conversation_label, id_hex};

/// Group names known locally, by id, for display.
#[derive(Debug, Default, Clone)]
pub struct Names {
    groups: HashMap<GroupId, String>,
    /// Groups we left or were removed from: shown, not resolved by name.
    inactive: HashSet<GroupId>,
    /// Contacts that are bot accounts (SPEC.md §12.3): marked in output.
    bots: HashSet<String>,
}

impl Names {
    /// Names from (id, name) pairs of active groups.
    #[cfg(test)]
    pub fn new(groups: impl IntoIterator<Item = (GroupId, String)>) -> Self {
        Self {
            groups: groups.into_iter().collect(),
            inactive: HashSet::new(),
            bots: HashSet::new(),
        }
    }

    /// Names from the groups an account knows.
    pub fn from_groups(groups: Vec<microbot_client::GroupInfo>) -> Self {
        let mut names = Self::default();
        for group in groups {
            if !group.active {
                names.inactive.insert(group.id);
            }
            names.groups.insert(group.id, group.name);
        }
        names
    }

    /// Marks these accounts as bots in the output.
    pub fn with_bots(mut self, bots: impl IntoIterator<Item = String>) -> Self {
        self.bots.extend(bots);
        self
    }

    fn is_bot(&self, username: &str) -> bool {
        self.bots.contains(username)
    }

    fn group(&self, id: &GroupId) -> Option<&str> {
        self.groups
            .get(id)
            .map(String::as_str)
            .filter(|name| !name.is_empty())
    }

    /// The group called `name`, or whose id is `name` in hex; an error
    /// when several groups have that name.
    pub fn find_group(&self, name: &str) -> Result<Option<GroupId>, crate::error::CliError> {
        let by_id = name
            .parse::<GroupId>()
            .ok()
            .filter(|id| self.groups.contains_key(id));
        if by_id.is_some() {
            return Ok(by_id);
        }
        let mut matching = self
            .groups
            .iter()
            .filter(|(id, n)| n.as_str() == name && !self.inactive.contains(id))
            .map(|(id, _)| *id);
        match (matching.next(), matching.next()) {
            (Some(id), None) => Ok(Some(id)),
            (None, _) if self.groups.values().any(|n| n == name) => {
                Err(crate::error::CliError::UnknownGroup(format!(
                    "{name} (you left it or were removed)"
                )))
            }
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(crate::error::CliError::Input(format!(
                "several groups are called {name:?}: name one by its id (`microbot group list`)"
            ))),
        }
    }

    /// A conversation as text (`bob`, `#team`).
    pub fn label(&self, conversation: &Conversation) -> String {
        match conversation {
            Conversation::Group(id) => conversation_label(conversation, self.group(id)),
            Conversation::Direct(_) => conversation_label(conversation, None),
        }
    }

    /// A conversation as JSON (`C` in the module docs).
    pub fn conversation(&self, conversation: &Conversation) -> Value {
        match conversation {
            Conversation::Direct(username) => json!({"type": "direct", "username": username}),
            Conversation::Group(id) => {
                json!({"type": "group", "id": id.to_string(), "name": self.group(id)})
            }
        }
    }
}

/// The `type` of an event in JSON (and for `recv --only`).
pub fn event_type(event: &Event) -> &'static str {
    match event {
        Event::Message(_) => "message",
        Event::Edited { .. } => "edited",
        Event::Deleted { .. } => "deleted",
        Event::Reaction { .. } => "reaction",
        Event::Receipt { .. } => "receipt",
        Event::Typing { .. } => "typing",
        Event::GroupChanged { .. } => "group_changed",
        Event::Sent { .. } => "sent",
        Event::SendFailed { .. } => "send_failed",
        Event::NotDelivered { .. } => "not_delivered",
        Event::Connection(_) => "connection",
        Event::SafetyNumberChanged { .. } => "safety_number_changed",
        Event::DecryptionFailed { .. } => "decryption_failed",
        Event::PrekeysRefilled { .. } => "prekeys_refilled",
        Event::DeviceAdded { .. } => "device_added",
        _ => "unrecognised",
    }
}

/// Every type [`event_type`] can return.
pub const EVENT_TYPES: &[&str] = &[
    "message",
    "edited",
    "deleted",
    "reaction",
    "receipt",
    "typing",
    "group_changed",
    "sent",
    "send_failed",
    "not_delivered",
    "connection",
    "safety_number_changed",
    "decryption_failed",
    "prekeys_refilled",
    "device_added",
    "unrecognised",
];

fn receipt_kind(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Delivered => "delivered",
        ReceiptKind::Read => "read",
        _ => "receipt",
    }
}

fn connection(state: &ConnectionState) -> (&'static str, Option<&str>) {
    match state {
        ConnectionState::Connecting => ("connecting", None),
        ConnectionState::Connected => ("connected", None),
        ConnectionState::CaughtUp => ("caught_up", None),
        ConnectionState::Disconnected { reason, .. } => ("disconnected", Some(reason)),
        ConnectionState::Refused { reason } => ("refused", Some(reason)),
        ConnectionState::Stopped => ("stopped", None),
        _ => ("unrecognised", None),
    }
}

/// The event as one JSON object.
pub fn to_json(event: &Event, names: &Names) -> Value {
    let kind = event_type(event);
    match event {
        Event::Message(m) => json!({
            "type": kind,
            "conversation": names.conversation(&m.conversation),
            "from": m.author,
            "bot": names.is_bot(&m.author),
            "device": m.author_device,
            "id": id_hex(&m.message_id),
            "sent_at_ms": m.sent_at_ms,
            "text": m.text,
            "reply_to": m.reply_to.as_ref().map(id_hex),
            "file": m.attachment.as_ref().map(|a| json!({
                "name": a.file_name,
                "size": a.size,
                "content_type": a.content_type,
            })),
        }),
        Event::Edited {
            conversation,
            author,
            target,
            text,
        } => json!({
            "type": kind,
            "conversation": names.conversation(conversation),
            "author": author,
            "target": id_hex(target),
            "text": text,
        }),
        Event::Deleted {
            conversation,
            author,
            target,
        } => json!({
            "type": kind,
            "conversation": names.conversation(conversation),
            "author": author,
            "target": id_hex(target),
        }),
        Event::Reaction {
            conversation,
            from,
            target,
            emoji,
            removed,
        } => json!({
            "type": kind,
            "conversation": names.conversation(conversation),
            "from": from,
            "target": id_hex(target),
            "emoji": emoji,
            "removed": removed,
        }),
        Event::Receipt {
            conversation,
            from,
            kind: receipt,
            message_ids,
        } => json!({
            "type": kind,
            "conversation": names.conversation(conversation),
            "from": from,
            "kind": receipt_kind(*receipt),
            "ids": message_ids.iter().map(id_hex).collect::<Vec<_>>(),
        }),
        Event::Typing {
            conversation,
            from,
            started,
        } => json!({
            "type": kind,
            "conversation": names.conversation(conversation),
            "from": from,
            "started": started,
        }),
        Event::GroupChanged {
            group_id,
            version,
            update,
        } => json!({
            "type": kind,
            "group": group_id.to_string(),
            "name": names.group(group_id),
            "version": version,
            "update": group_update(update),
        }),
        Event::Sent {
            message_id,
            server_timestamp_ms,
        } => json!({
            "type": kind,
            "id": id_hex(message_id),
            "server_timestamp_ms": server_timestamp_ms,
        }),
        Event::SendFailed { message_id, reason } => json!({
            "type": kind,
            "id": id_hex(message_id),
            "reason": reason.to_string(),
            "reason_kind": reason.kind(),
        }),
        Event::NotDelivered {
            message_id,
            usernames,
            device_ids,
        } => json!({
            "type": kind,
            "id": id_hex(message_id),
            "usernames": usernames,
            "device_ids": device_ids,
        }),
        Event::Connection(state) => {
            let (state, reason) = connection(state);
            json!({"type": kind, "state": state, "reason": reason})
        }
        Event::SafetyNumberChanged {
            username,
            safety_number,
        } => json!({
            "type": kind,
            "username": username,
            "safety_number": safety_number.display(),
        }),
        Event::DecryptionFailed {
            sender,
            sender_device,
            reason,
        } => json!({
            "type": kind,
            "sender": sender,
            "device": sender_device,
            "reason": reason,
        }),
        Event::PrekeysRefilled { uploaded } => json!({"type": kind, "uploaded": uploaded}),
        Event::DeviceAdded {
            username,
            device_id,
        } => json!({"type": kind, "username": username, "device": device_id}),
        other => json!({"type": kind, "sdk_kind": other.kind()}),
    }
}

fn group_update(update: &GroupUpdate) -> Value {
    match update {
        GroupUpdate::Created { by, name } => json!({"kind": "created", "by": by, "name": name}),
        GroupUpdate::MembersAdded { usernames } => {
            json!({"kind": "members_added", "usernames": usernames})
        }
        GroupUpdate::MembersRemoved { usernames } => {
            json!({"kind": "members_removed", "usernames": usernames})
        }
        GroupUpdate::Left { username } => json!({"kind": "left", "username": username}),
        GroupUpdate::Renamed { name } => json!({"kind": "renamed", "name": name}),
        GroupUpdate::RolesChanged => json!({"kind": "roles_changed"}),
        _ => json!({"kind": "unrecognised"}),
    }
}

/// What changed in a group, for people.
pub fn group_update_text(update: &GroupUpdate) -> String {
    match update {
        GroupUpdate::Created { by, name } => format!("{by} created the group {name:?}"),
        GroupUpdate::MembersAdded { usernames } => format!("added: {}", usernames.join(", ")),
        GroupUpdate::MembersRemoved { usernames } => {
            format!("removed: {}", usernames.join(", "))
        }
        GroupUpdate::Left { username } => format!("{username} left"),
        GroupUpdate::Renamed { name } => format!("renamed to {name:?}"),
        GroupUpdate::RolesChanged => "roles changed".to_owned(),
        _ => "changed".to_owned(),
    }
}

fn short(id: &[u8; 16]) -> String {
    hex::encode(id.get(..4).unwrap_or_default())
}

/// A message's text followed by its file, if any:
/// `caption [file "a.pdf", 1.2 MiB: microbot file get <id> DEST]`.
pub fn body(text: &str, file: Option<&AttachmentPointer>, id: &MessageId) -> String {
    let Some(file) = file else {
        return text.to_owned();
    };
    let file = format!(
        "[file {:?}, {}: `microbot file get {} DEST`]",
        file.file_name,
        progress::bytes(file.size as f64),
        id_hex(id)
    );
    if text.is_empty() {
        file
    } else {
        format!("{text} {file}")
    }
}

/// The event as one line of text for people.
pub fn to_line(event: &Event, names: &Names) -> String {
    match event {
        Event::Message(m) => format!(
            "[{}] {}{}{}: {}  (id {})",
            names.label(&m.conversation),
            m.author,
            if names.is_bot(&m.author) {
                " (bot)"
            } else {
                ""
            },
            m.reply_to
                .as_ref()
                .map(|r| format!(" (reply to {})", short(r)))
                .unwrap_or_default(),
            body(&m.text, m.attachment.as_ref(), &m.message_id),
            id_hex(&m.message_id)
        ),
        Event::Edited {
            conversation,
            author,
            target,
            text,
        } => format!(
            "[{}] {author} edited {}: {text}",
            names.label(conversation),
            short(target)
        ),
        Event::Deleted {
            conversation,
            author,
            target,
        } => format!(
            "[{}] {author} deleted {}",
            names.label(conversation),
            short(target)
        ),
        Event::Reaction {
            conversation,
            from,
            target,
            emoji,
            removed,
        } => format!(
            "[{}] {from} {} {emoji} on {}",
            names.label(conversation),
            if *removed { "withdrew" } else { "reacted" },
            short(target)
        ),
        Event::Receipt {
            conversation,
            from,
            kind,
            message_ids,
        } => format!(
            "[{}] {from}: {} {}",
            names.label(conversation),
            receipt_kind(*kind),
            message_ids.iter().map(short).collect::<Vec<_>>().join(" ")
        ),
        Event::Typing {
            conversation,
            from,
            started,
        } => format!(
            "[{}] {from} {}",
            names.label(conversation),
            if *started {
                "is typing…"
            } else {
                "stopped typing"
            }
        ),
        Event::GroupChanged {
            group_id, update, ..
        } => format!(
            "[{}] {}",
            names.label(&Conversation::Group(*group_id)),
            group_update_text(update)
        ),
        Event::Sent { message_id, .. } => format!("sent {}", id_hex(message_id)),
        Event::SendFailed { message_id, reason } => {
            format!("could not send {}: {reason}", id_hex(message_id))
        }
        Event::NotDelivered {
            message_id,
            usernames,
            ..
        } => {
            let who = if usernames.is_empty() {
                "some members".to_owned()
            } else {
                usernames.join(", ")
            };
            format!(
                "{} was not delivered to {who}: their message queue on the server is full",
                id_hex(message_id)
            )
        }
        Event::Connection(state) => match connection(state) {
            (state, Some(reason)) => format!("connection {state}: {reason}"),
            (state, None) => format!("connection {state}"),
        },
        Event::SafetyNumberChanged {
            username,
            safety_number,
        } => format!(
            "the safety number of {username} changed to {}: compare it, then `microbot verify {username} --accept`",
            safety_number.display()
        ),
        Event::DecryptionFailed {
            sender,
            sender_device,
            reason,
        } => {
            format!("could not decrypt a message from {sender} (device {sender_device}): {reason}")
        }
        Event::PrekeysRefilled { uploaded } => format!("uploaded {uploaded} prekeys"),
        Event::DeviceAdded {
            username,
            device_id,
        } => format!("{username} linked a new device ({device_id}); messages go to it too"),
        other => format!("an event this version does not show ({})", other.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microbot_client::SendFailureReason;

    #[test]
    fn json_names_the_conversation_and_hex_ids() {
        let team = GroupId::from_bytes([1u8; 16]);
        let names = Names::new([(team, "team".to_owned())]);
        let event = Event::Reaction {
            conversation: Conversation::Group(team),
            from: "bob".into(),
            target: [2u8; 16],
            emoji: "👍".into(),
            removed: false,
        };
        let value = to_json(&event, &names);
        assert_eq!(value["type"], "reaction");
        assert_eq!(value["conversation"]["type"], "group");
        assert_eq!(value["conversation"]["name"], "team");
        assert_eq!(value["target"], "02".repeat(16));
        assert!(to_line(&event, &names).starts_with("[#team] bob reacted 👍"));
        let direct = Event::Typing {
            conversation: Conversation::Direct("alice".into()),
            from: "alice".into(),
            started: true,
        };
        assert_eq!(
            to_json(&direct, &names)["conversation"]["username"],
            "alice"
        );
        assert!(EVENT_TYPES.contains(&event_type(&direct)));
    }

    #[test]
    fn a_failed_send_carries_its_reason_for_people_and_its_kind_for_scripts() {
        let names = Names::default();
        let team = GroupId::from_bytes([3u8; 16]);
        let cases = [
            (
                SendFailureReason::UnknownAccount {
                    username: "frank".into(),
                },
                "unknown_account",
                "no account named frank",
            ),
            (
                SendFailureReason::NotGroupMember { group_id: team },
                "not_group_member",
                "this account is not a member of the group",
            ),
            (
                SendFailureReason::ServerRefused {
                    code: microbot_client::ErrorCode::QueueFull,
                    message: "recipient queue full".into(),
                },
                "server_refused",
                "server refused the request: QueueFull: recipient queue full",
            ),
        ];
        for (reason, kind, text) in cases {
            let event = Event::SendFailed {
                message_id: [4u8; 16],
                reason,
            };
            let value = to_json(&event, &names);
            assert_eq!(value["type"], "send_failed");
            assert_eq!(value["id"], "04".repeat(16));
            assert_eq!(value["reason_kind"], kind);
            assert_eq!(value["reason"], text);
            assert!(to_line(&event, &names).ends_with(text));
        }
    }
}
