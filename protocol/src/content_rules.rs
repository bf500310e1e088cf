//! Content validity rules: SPEC.md §11.2 (limits) and the receiving side's
//! single entry point, [`decode_content`].
//!
//! What the field limits are and which error names each breach. Not owned
//! here: the wire schema (`proto/content.proto`), padding
//! ([`crate::padding`]) and edit/delete state ([`crate::convergence`]).

use prost::Message;

use crate::content::{
    AttachmentPointer, CallSignal, Content, GroupChange, GroupChangeKind, GroupMetadata, GroupRole,
    MiniappEvent, ReplyTo, SyncMessage, TypingAction, call_signal, content::Body, sent_transcript,
    sync_message,
};

/// Length of message ids, group ids, call ids and attachment ids.
pub const ID_LEN: usize = 16;
/// A message id: 16 random bytes chosen by the sender.
pub type MessageId = [u8; ID_LEN];
/// Length of attachment keys and group metadata keys.
pub const KEY_LEN: usize = 32;
/// Length of an attachment ciphertext digest (SHA-256).
pub const DIGEST_LEN: usize = 32;
/// Longest encoded `Content`, padding included.
pub const MAX_CONTENT_LEN: usize = 256 * 1024;
/// Longest `Text.text` and `Edit.text`, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Longest `ReplyTo.snippet`, in bytes.
pub const MAX_SNIPPET_LEN: usize = 1024;
/// Longest username, in bytes.
pub const MAX_USERNAME_LEN: usize = 32;
/// Length of `Content.profile_key` when set (SPEC.md §19.7).
pub const PROFILE_KEY_LEN: usize = 32;
/// Longest `Reaction.emoji`, in bytes.
pub const MAX_EMOJI_LEN: usize = 64;
/// Most message ids in one read or delivery receipt.
pub const MAX_RECEIPT_IDS: usize = 1000;
/// Longest `AttachmentPointer.content_type`, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// Longest `AttachmentPointer.file_name`, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest `AttachmentPointer.caption`, in bytes.
pub const MAX_CAPTION_LEN: usize = 4096;
/// Longest `AttachmentPointer.thumbnail`, in bytes.
pub const MAX_THUMBNAIL_LEN: usize = 64 * 1024;
/// Most usernames in one `GroupChange`.
pub const MAX_GROUP_USERNAMES: usize = 1000;
/// Longest `GroupMetadata.name`, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 256;
/// Longest `GroupMetadata.description`, in bytes.
pub const MAX_GROUP_DESCRIPTION_LEN: usize = 4096;
/// Longest `SenderKeyDistribution.distribution`, in bytes.
pub const MAX_DISTRIBUTION_LEN: usize = 1024;
/// Longest SDP text in `CallOffer` / `CallAnswer`, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Longest `CallIceCandidate.candidate`, in bytes.
pub const MAX_ICE_CANDIDATE_LEN: usize = 4096;
/// Longest `CallIceCandidate.sdp_mid`, in bytes.
pub const MAX_SDP_MID_LEN: usize = 256;
/// Longest `MiniappEvent.app_id`, in bytes.
pub const MAX_MINIAPP_ID_LEN: usize = 64;
/// Longest `MiniappEvent.payload`, in bytes.
pub const MAX_MINIAPP_PAYLOAD_LEN: usize = 16 * 1024;

/// Why received content was refused. The message is dropped; the session
/// that decrypted it is not affected.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The encoded content is longer than [`MAX_CONTENT_LEN`].
    #[error("content of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The bytes are not a protobuf `Content` (or a string is not UTF-8).
    #[error("content does not decode: {0}")]
    Decode(#[source] prost::DecodeError),
    /// `body` is unset: empty, or a kind from a newer protocol version.
    #[error("content has no body this version supports")]
    UnsupportedBody,
    /// A required sub-message or oneof is unset.
    #[error("{field} is missing")]
    Missing {
        /// The field, as `message.field`.
        field: &'static str,
    },
    /// A fixed-length field has the wrong length.
    #[error("{field} must be {expected} bytes, got {len}")]
    WrongLength {
        /// The field, as `message.field`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The only length allowed.
        expected: usize,
    },
    /// A field that must not be empty is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// The field, as `message.field`.
        field: &'static str,
    },
    /// A field is longer than its limit.
    #[error("{field} is {len} bytes, the maximum is {max}")]
    TooLong {
        /// The field, as `message.field`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A repeated field has too many entries.
    #[error("{field} has {count} entries, the maximum is {max}")]
    TooMany {
        /// The field, as `message.field`.
        field: &'static str,
        /// Number of entries.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// An enum field holds UNSPECIFIED or a value this version does not know
    /// where a known value is required.
    #[error("{field} has invalid value {value}")]
    InvalidEnum {
        /// The field, as `message.field`.
        field: &'static str,
        /// The raw value.
        value: i32,
    },
    /// A number is below its minimum.
    #[error("{field} is {value}, the minimum is {min}")]
    TooSmall {
        /// The field, as `message.field`.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The minimum.
        min: u64,
    },
    /// A `SentTranscript` carries another `SyncMessage` (§11.7 forbids
    /// nesting), or names a group other than its content's.
    #[error("invalid sync message: {reason}")]
    InvalidSync {
        /// Which rule was broken.
        reason: &'static str,
    },
}

/// Decodes and validates received content (after decryption): refuses input
/// over [`MAX_CONTENT_LEN`] before decoding, then applies every §11.2 rule.
///
/// # Errors
/// Any [`ContentError`].
pub fn decode_content(bytes: &[u8]) -> Result<Content, ContentError> {
    if bytes.len() > MAX_CONTENT_LEN {
        return Err(ContentError::TooLarge {
            len: bytes.len(),
            max: MAX_CONTENT_LEN,
        });
    }
    let content = Content::decode(bytes).map_err(ContentError::Decode)?;
    content.validate()?;
    Ok(content)
}

impl Content {
    /// Checks every limit of SPEC.md §11.2. Senders call it before sealing,
    /// receivers after decoding ([`decode_content`] does).
    ///
    /// # Errors
    /// The first rule broken, as a [`ContentError`].
    pub fn validate(&self) -> Result<(), ContentError> {
        let len = self.encoded_len();
        if len > MAX_CONTENT_LEN {
            return Err(ContentError::TooLarge {
                len,
                max: MAX_CONTENT_LEN,
            });
        }
        exact("content.message_id", &self.message_id, ID_LEN)?;
        if !self.group_id.is_empty() {
            exact("content.group_id", &self.group_id, ID_LEN)?;
        }
        if !self.profile_key.is_empty() {
            exact("content.profile_key", &self.profile_key, PROFILE_KEY_LEN)?;
        }
        match &self.body {
            None => Err(ContentError::UnsupportedBody),
            Some(body) => validate_body(body),
        }
    }
}

fn validate_body(body: &Body) -> Result<(), ContentError> {
    match body {
        Body::Text(text) => {
            bounded_nonempty("text.text", &text.text, MAX_TEXT_LEN)?;
            text.reply_to.as_ref().map_or(Ok(()), validate_reply_to)
        }
        Body::Reaction(reaction) => {
            exact(
                "reaction.target_message_id",
                &reaction.target_message_id,
                ID_LEN,
            )?;
            bounded_nonempty("reaction.emoji", &reaction.emoji, MAX_EMOJI_LEN)
        }
        Body::Edit(edit) => {
            exact("edit.target_message_id", &edit.target_message_id, ID_LEN)?;
            bounded_nonempty("edit.text", &edit.text, MAX_TEXT_LEN)?;
            at_least("edit.revision", edit.revision, 1)
        }
        Body::Delete(delete) => exact(
            "delete.target_message_id",
            &delete.target_message_id,
            ID_LEN,
        ),
        Body::ReadReceipt(receipt) => {
            validate_ids("read_receipt.message_ids", &receipt.message_ids)
        }
        Body::DeliveryReceipt(receipt) => {
            validate_ids("delivery_receipt.message_ids", &receipt.message_ids)
        }
        Body::Typing(typing) => match TypingAction::try_from(typing.action) {
            Ok(TypingAction::Started | TypingAction::Stopped) => Ok(()),
            _ => Err(ContentError::InvalidEnum {
                field: "typing.action",
                value: typing.action,
            }),
        },
        Body::Attachment(pointer) => validate_pointer(pointer),
        Body::GroupChange(change) => validate_group_change(change),
        Body::SenderKeyDistribution(distribution) => {
            exact(
                "sender_key_distribution.group_id",
                &distribution.group_id,
                ID_LEN,
            )?;
            bounded_nonempty_bytes(
                "sender_key_distribution.distribution",
                &distribution.distribution,
                MAX_DISTRIBUTION_LEN,
            )
        }
        Body::CallSignal(signal) => validate_call_signal(signal),
        Body::Sync(sync) => validate_sync(sync),
        Body::MiniappEvent(event) => validate_miniapp_event(event),
    }
}

/// §11.9: an app id, a 16-byte instance id and a bounded, non-empty payload.
fn validate_miniapp_event(event: &MiniappEvent) -> Result<(), ContentError> {
    bounded_nonempty("miniapp_event.app_id", &event.app_id, MAX_MINIAPP_ID_LEN)?;
    exact("miniapp_event.instance_id", &event.instance_id, ID_LEN)?;
    bounded_nonempty_bytes(
        "miniapp_event.payload",
        &event.payload,
        MAX_MINIAPP_PAYLOAD_LEN,
    )
}

/// §11.7: one kind, one destination, a valid inner content that is not
/// itself a sync message and belongs to the named group.
fn validate_sync(sync: &SyncMessage) -> Result<(), ContentError> {
    let Some(sync_message::Kind::Sent(sent)) = &sync.kind else {
        return Err(ContentError::Missing { field: "sync.kind" });
    };
    let content = sent.content.as_deref().ok_or(ContentError::Missing {
        field: "sent_transcript.content",
    })?;
    if matches!(content.body, Some(Body::Sync(_))) {
        return Err(ContentError::InvalidSync {
            reason: "a transcript cannot carry another sync message",
        });
    }
    match &sent.destination {
        None => Err(ContentError::Missing {
            field: "sent_transcript.destination",
        }),
        Some(sent_transcript::Destination::DestinationUsername(name)) => {
            bounded_nonempty(
                "sent_transcript.destination_username",
                name,
                MAX_USERNAME_LEN,
            )?;
            if !content.group_id.is_empty() {
                return Err(ContentError::InvalidSync {
                    reason: "a 1:1 transcript carries group content",
                });
            }
            content.validate()
        }
        Some(sent_transcript::Destination::DestinationGroupId(group)) => {
            exact("sent_transcript.destination_group_id", group, ID_LEN)?;
            if content.group_id != *group {
                return Err(ContentError::InvalidSync {
                    reason: "the transcript names another group than its content",
                });
            }
            content.validate()
        }
    }
}

fn validate_reply_to(reply_to: &ReplyTo) -> Result<(), ContentError> {
    exact("reply_to.message_id", &reply_to.message_id, ID_LEN)?;
    bounded_nonempty(
        "reply_to.author_username",
        &reply_to.author_username,
        MAX_USERNAME_LEN,
    )?;
    at_most("reply_to.snippet", reply_to.snippet.len(), MAX_SNIPPET_LEN)
}

fn validate_ids(field: &'static str, ids: &[bytes::Bytes]) -> Result<(), ContentError> {
    if ids.is_empty() {
        return Err(ContentError::Empty { field });
    }
    if ids.len() > MAX_RECEIPT_IDS {
        return Err(ContentError::TooMany {
            field,
            count: ids.len(),
            max: MAX_RECEIPT_IDS,
        });
    }
    ids.iter().try_for_each(|id| exact(field, id, ID_LEN))
}

fn validate_pointer(pointer: &AttachmentPointer) -> Result<(), ContentError> {
    exact("attachment.attachment_id", &pointer.attachment_id, ID_LEN)?;
    exact("attachment.key", &pointer.key, KEY_LEN)?;
    exact("attachment.digest", &pointer.digest, DIGEST_LEN)?;
    at_most(
        "attachment.content_type",
        pointer.content_type.len(),
        MAX_CONTENT_TYPE_LEN,
    )?;
    at_most(
        "attachment.file_name",
        pointer.file_name.len(),
        MAX_FILE_NAME_LEN,
    )?;
    at_most("attachment.caption", pointer.caption.len(), MAX_CAPTION_LEN)?;
    at_most(
        "attachment.thumbnail",
        pointer.thumbnail.len(),
        MAX_THUMBNAIL_LEN,
    )
}

fn validate_group_change(change: &GroupChange) -> Result<(), ContentError> {
    exact("group_change.group_id", &change.group_id, ID_LEN)?;
    at_least("group_change.version", change.version, 1)?;
    let kind = GroupChangeKind::try_from(change.kind)
        .ok()
        .filter(|kind| *kind != GroupChangeKind::Unspecified)
        .ok_or(ContentError::InvalidEnum {
            field: "group_change.kind",
            value: change.kind,
        })?;
    if change.usernames.len() > MAX_GROUP_USERNAMES {
        return Err(ContentError::TooMany {
            field: "group_change.usernames",
            count: change.usernames.len(),
            max: MAX_GROUP_USERNAMES,
        });
    }
    for username in &change.usernames {
        bounded_nonempty("group_change.usernames", username, MAX_USERNAME_LEN)?;
    }
    let needs_usernames = matches!(
        kind,
        GroupChangeKind::MembersAdded
            | GroupChangeKind::MembersRemoved
            | GroupChangeKind::RoleChanged
    );
    if needs_usernames && change.usernames.is_empty() {
        return Err(ContentError::Empty {
            field: "group_change.usernames",
        });
    }
    let role = GroupRole::try_from(change.role).map_err(|_| ContentError::InvalidEnum {
        field: "group_change.role",
        value: change.role,
    })?;
    if kind == GroupChangeKind::RoleChanged && role == GroupRole::Unspecified {
        return Err(ContentError::InvalidEnum {
            field: "group_change.role",
            value: change.role,
        });
    }
    if !change.metadata_key.is_empty() {
        exact("group_change.metadata_key", &change.metadata_key, KEY_LEN)?;
    }
    change.metadata.as_ref().map_or(Ok(()), validate_metadata)
}

fn validate_metadata(metadata: &GroupMetadata) -> Result<(), ContentError> {
    at_most(
        "group_metadata.name",
        metadata.name.len(),
        MAX_GROUP_NAME_LEN,
    )?;
    at_most(
        "group_metadata.description",
        metadata.description.len(),
        MAX_GROUP_DESCRIPTION_LEN,
    )?;
    metadata.avatar.as_ref().map_or(Ok(()), validate_pointer)
}

fn validate_call_signal(signal: &CallSignal) -> Result<(), ContentError> {
    exact("call_signal.call_id", &signal.call_id, ID_LEN)?;
    match &signal.signal {
        None => Err(ContentError::Missing {
            field: "call_signal.signal",
        }),
        Some(call_signal::Signal::Offer(offer)) => {
            bounded_nonempty("call_offer.sdp", &offer.sdp, MAX_SDP_LEN)
        }
        Some(call_signal::Signal::Answer(answer)) => {
            bounded_nonempty("call_answer.sdp", &answer.sdp, MAX_SDP_LEN)
        }
        Some(call_signal::Signal::IceCandidate(candidate)) => {
            bounded_nonempty(
                "call_ice_candidate.candidate",
                &candidate.candidate,
                MAX_ICE_CANDIDATE_LEN,
            )?;
            at_most(
                "call_ice_candidate.sdp_mid",
                candidate.sdp_mid.len(),
                MAX_SDP_MID_LEN,
            )
        }
        // Any reason is accepted: unknown ones read as NORMAL.
        Some(call_signal::Signal::Hangup(_)) => Ok(()),
    }
}

fn exact(field: &'static str, bytes: &[u8], expected: usize) -> Result<(), ContentError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(ContentError::WrongLength {
            field,
            len: bytes.len(),
            expected,
        })
    }
}

fn at_most(field: &'static str, len: usize, max: usize) -> Result<(), ContentError> {
    if len <= max {
        Ok(())
    } else {
        Err(ContentError::TooLong { field, len, max })
    }
}

fn bounded_nonempty(field: &'static str, text: &str, max: usize) -> Result<(), ContentError> {
    bounded_nonempty_bytes(field, text.as_bytes(), max)
}

fn bounded_nonempty_bytes(
    field: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<(), ContentError> {
    if bytes.is_empty() {
        return Err(ContentError::Empty { field });
    }
    at_most(field, bytes.len(), max)
}

fn at_least(field: &'static str, value: u64, min: u64) -> Result<(), ContentError> {
    if value >= min {
        Ok(())
    } else {
        Err(ContentError::TooSmall { field, value, min })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(app_id: &str, instance_id: &[u8], payload: &[u8]) -> Content {
        let mut content = Content::miniapp_event([1; ID_LEN], 5, app_id, [2; ID_LEN], Vec::new());
        if let Some(Body::MiniappEvent(event)) = &mut content.body {
            event.instance_id = bytes::Bytes::copy_from_slice(instance_id);
            event.payload = bytes::Bytes::copy_from_slice(payload);
        }
        content.group_id = bytes::Bytes::from_static(&[3; ID_LEN]);
        content
    }

    #[test]
    fn miniapp_events_within_the_limits_round_trip() {
        for content in [
            event("poll", &[2; ID_LEN], b"{}"),
            event(
                &"a".repeat(MAX_MINIAPP_ID_LEN),
                &[2; ID_LEN],
                &[7; MAX_MINIAPP_PAYLOAD_LEN],
            ),
        ] {
            content.validate().unwrap();
            let decoded = decode_content(&content.encode_to_vec()).unwrap();
            assert_eq!(decoded, content);
            assert_eq!(decoded.body.as_ref().unwrap().kind_name(), "miniapp_event");
        }
    }

    #[test]
    fn miniapp_events_breaking_a_rule_are_refused_with_the_field() {
        let cases: [(Content, &str); 6] = [
            (event("", &[2; ID_LEN], b"x"), "miniapp_event.app_id"),
            (
                event(&"a".repeat(MAX_MINIAPP_ID_LEN + 1), &[2; ID_LEN], b"x"),
                "miniapp_event.app_id",
            ),
            (event("poll", &[2; 15], b"x"), "miniapp_event.instance_id"),
            (event("poll", &[], b"x"), "miniapp_event.instance_id"),
            (event("poll", &[2; ID_LEN], b""), "miniapp_event.payload"),
            (
                event("poll", &[2; ID_LEN], &[0; MAX_MINIAPP_PAYLOAD_LEN + 1]),
                "miniapp_event.payload",
            ),
        ];
        for (content, expected) in cases {
            let error = decode_content(&content.encode_to_vec()).unwrap_err();
            let field = match error {
                ContentError::Empty { field }
                | ContentError::TooLong { field, .. }
                | ContentError::WrongLength { field, .. } => field,
                other => panic!("unexpected error {other}"),
            };
            assert_eq!(field, expected);
        }
    }

    #[test]
    fn miniapp_event_debug_hides_the_payload() {
        let content = event("poll", &[2; ID_LEN], b"secret vote for kim");
        let printed = format!("{content:?}");
        assert!(printed.contains("miniapp_event"), "{printed}");
        assert!(
            !printed.contains("secret") && !printed.contains("poll"),
            "{printed}"
        );
    }
}
