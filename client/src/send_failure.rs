//! Why a queued send was dropped from the outbox: the typed reason of
//! [`Event::SendFailed`](crate::Event::SendFailed), made where the send
//! fails (sessions.rs, groups/send.rs, outbox/plan.rs) and carried as is to
//! the application, so no caller parses text. Each reason's `Display` is
//! the human sentence; [`SendFailureReason::kind`] is a stable machine name.
//! Not owned here: deciding that a failure is permanent (sessions.rs,
//! outbox/drain.rs), transient failures (those keep the row queued).

use std::fmt;

use microbot_crypto::device_list::DeviceListError;
use microbot_protocol::transport::ErrorCode;

use crate::groups::GroupId;

/// Why a message could not be sent ([`Event::SendFailed`](crate::Event::SendFailed)).
/// The message was dropped from the outbox: sending it again (after what
/// the reason names is fixed) is a new message.
///
/// `Display` gives a sentence for people; [`SendFailureReason::kind`] a
/// stable name for programs.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailureReason {
    /// The server has no account with this username: check the spelling.
    UnknownAccount {
        /// The username the message was addressed to.
        username: String,
    },
    /// The account exists but none of its devices published keys, so no
    /// device can receive the message (try again once it has enrolled one).
    NoDevices {
        /// The contact.
        username: String,
    },
    /// The keys the server served for this account were refused, so
    /// nothing was encrypted for it (a possible attack by the server;
    /// compare safety numbers with the contact).
    KeysRefused {
        /// Whose keys (a contact, or this account for our own devices).
        username: String,
        /// What was wrong with them.
        refusal: KeyRefusal,
    },
    /// The devices of the recipient kept changing while the message was
    /// being sent (every retry met another device list).
    DevicesKeepChanging {
        /// The recipient.
        username: String,
    },
    /// This device does not know the group.
    UnknownGroup {
        /// The group.
        group_id: GroupId,
    },
    /// This account is not a member of the group (removed, or left).
    NotGroupMember {
        /// The group.
        group_id: GroupId,
    },
    /// The member devices of the group kept changing while the message was
    /// being sent (every retry met another device list).
    GroupDevicesKeepChanging {
        /// The group.
        group_id: GroupId,
    },
    /// This device's sender key for the group cannot seal another message
    /// (its chain is exhausted).
    SenderKeyExhausted {
        /// The group.
        group_id: GroupId,
    },
    /// The server refused the send.
    ServerRefused {
        /// The server's error code (SPEC.md §12.4).
        code: ErrorCode,
        /// The server's explanation (never secret).
        message: String,
    },
    /// The exchange with the server broke in another way than a refusal or
    /// a lost connection: an answer of the wrong kind or that could not
    /// be decoded, or an unusable server configuration.
    RequestFailed {
        /// What went wrong.
        detail: String,
    },
    /// A queued row names no conversation this SDK knows (a damaged or
    /// foreign store).
    UnknownDestination {
        /// The row's destination key.
        destination: String,
    },
    /// The encrypted copy of a queued file, kept next to the store until
    /// its upload, is gone or damaged (removed by hand, a disk fault):
    /// send the file again.
    FileUnavailable {
        /// What was wrong with the copy (no file contents).
        detail: String,
    },
}

/// What was refused in an account's keys ([`SendFailureReason::KeysRefused`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// These devices sign for post-quantum (ML-KEM) prekeys but the server
    /// served their bundles without one: refused as a possible downgrade
    /// attack (SPEC.md §4.2). Nothing was saved; the next send fetches
    /// the bundles again.
    Downgrade {
        /// The devices concerned.
        device_ids: Vec<u64>,
    },
    /// The account's signed device list does not verify under the identity
    /// we trust, or names another account (SPEC.md §20).
    ForgedDeviceList {
        /// Why it does not verify.
        error: DeviceListError,
    },
    /// The account's signed device list is older than one verified before.
    DeviceListRollback {
        /// The highest version verified before.
        seen: u64,
        /// The version served now.
        served: u64,
    },
    /// Another list with the version verified before, naming other devices.
    DeviceListEquivocation {
        /// The version.
        version: u64,
    },
    /// No signed device list, where one was verified before.
    DeviceListMissing {
        /// The version verified before.
        seen: u64,
    },
}

impl SendFailureReason {
    /// The reason's name, stable across releases, in snake case
    /// (`"unknown_account"`, `"not_group_member"`, …): for JSON, logs,
    /// metrics and bindings, also for a reason newer than the caller (the
    /// enum is `#[non_exhaustive]`).
    pub fn kind(&self) -> &'static str {
        match self {
            SendFailureReason::UnknownAccount { .. } => "unknown_account",
            SendFailureReason::NoDevices { .. } => "no_devices",
            SendFailureReason::KeysRefused { .. } => "keys_refused",
            SendFailureReason::DevicesKeepChanging { .. } => "devices_keep_changing",
            SendFailureReason::GroupDevicesKeepChanging { .. } => "group_devices_keep_changing",
            SendFailureReason::UnknownGroup { .. } => "unknown_group",
            SendFailureReason::NotGroupMember { .. } => "not_group_member",
            SendFailureReason::SenderKeyExhausted { .. } => "sender_key_exhausted",
            SendFailureReason::ServerRefused { .. } => "server_refused",
            SendFailureReason::RequestFailed { .. } => "request_failed",
            SendFailureReason::UnknownDestination { .. } => "unknown_destination",
            SendFailureReason::FileUnavailable { .. } => "file_unavailable",
        }
    }
}

impl fmt::Display for SendFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendFailureReason::UnknownAccount { username } => {
                write!(f, "no account named {username}")
            }
            SendFailureReason::NoDevices { username } => {
                write!(f, "{username} has no device that published keys")
            }
            SendFailureReason::KeysRefused {
                username,
                refusal: refusal @ KeyRefusal::Downgrade { .. },
            } => write!(f, "{username}'s {refusal}"),
            SendFailureReason::KeysRefused { username, refusal } => {
                write!(f, "refused: {username}'s {refusal}")
            }
            SendFailureReason::DevicesKeepChanging { .. } => {
                f.write_str("the recipient's device list keeps changing")
            }
            SendFailureReason::GroupDevicesKeepChanging { .. } => {
                f.write_str("the group's device list keeps changing")
            }
            SendFailureReason::UnknownGroup { .. } => f.write_str("unknown group"),
            SendFailureReason::NotGroupMember { .. } => {
                f.write_str("this account is not a member of the group")
            }
            SendFailureReason::SenderKeyExhausted { .. } => {
                f.write_str("sender-key chain exhausted: rotate the sender key")
            }
            SendFailureReason::ServerRefused { code, message } => {
                write!(f, "server refused the request: {code:?}: {message}")
            }
            SendFailureReason::RequestFailed { detail } => f.write_str(detail),
            SendFailureReason::UnknownDestination { destination } => {
                write!(f, "unknown destination {destination}")
            }
            SendFailureReason::FileUnavailable { detail } => {
                write!(f, "the queued file cannot be sent: {detail}")
            }
        }
    }
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRefusal::Downgrade { device_ids } => write!(
                f,
                "devices {device_ids:?} sign for post-quantum (ML-KEM) prekeys but the server \
                 sent none: refused as a possible downgrade attack"
            ),
            KeyRefusal::ForgedDeviceList { error } => write!(
                f,
                "device list is not signed by the identity we trust ({error})"
            ),
            KeyRefusal::DeviceListRollback { seen, served } => {
                write!(f, "device list went back from version {seen} to {served}")
            }
            KeyRefusal::DeviceListEquivocation { version } => write!(
                f,
                "device list version {version} was served with other devices"
            ),
            KeyRefusal::DeviceListMissing { seen } => {
                write!(f, "signed device list (version {seen}) is missing")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_before_and_have_stable_kinds() {
        let unknown = SendFailureReason::UnknownAccount {
            username: "frank".into(),
        };
        assert_eq!(unknown.to_string(), "no account named frank");
        assert_eq!(unknown.kind(), "unknown_account");
        let downgrade = SendFailureReason::KeysRefused {
            username: "bob".into(),
            refusal: KeyRefusal::Downgrade {
                device_ids: vec![2],
            },
        };
        assert_eq!(
            downgrade.to_string(),
            "bob's devices [2] sign for post-quantum (ML-KEM) prekeys but the server sent \
             none: refused as a possible downgrade attack"
        );
        let rollback = SendFailureReason::KeysRefused {
            username: "alice".into(),
            refusal: KeyRefusal::DeviceListRollback { seen: 2, served: 1 },
        };
        assert_eq!(
            rollback.to_string(),
            "refused: alice's device list went back from version 2 to 1"
        );
        let refused = SendFailureReason::ServerRefused {
            code: ErrorCode::QueueFull,
            message: "full".into(),
        };
        assert_eq!(
            refused.to_string(),
            "server refused the request: QueueFull: full"
        );
        assert_eq!(refused.kind(), "server_refused");
        let lost = SendFailureReason::FileUnavailable {
            detail: "gone".into(),
        };
        assert_eq!(lost.to_string(), "the queued file cannot be sent: gone");
        assert_eq!(lost.kind(), "file_unavailable");
    }
}
