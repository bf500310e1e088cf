//! Content messages (SPEC.md §11): round trips, validity rules, padding.

use bytes::Bytes;
use microbot_protocol::content::{
    AttachmentPointer, CallAnswer, CallHangup, CallIceCandidate, CallOffer, Content, GroupChange,
    GroupChangeKind, GroupMetadata, GroupRole, HangupReason, ReplyTo, TypingAction, call_signal,
    content::Body,
};
use microbot_protocol::content_rules::{MAX_CONTENT_LEN, MAX_RECEIPT_IDS, MAX_TEXT_LEN};
use microbot_protocol::padding::{PADDING_BUCKET, pad_to_bucket, padded_len, padding_len};
use microbot_protocol::{ContentError, decode_content};
use proptest::prelude::*;
use prost::Message;

const ID: [u8; 16] = [0x11; 16];
const TARGET: [u8; 16] = [0x22; 16];
const GROUP: [u8; 16] = [0x33; 16];
const TS: u64 = 1_700_000_000_000;

fn pointer() -> AttachmentPointer {
    AttachmentPointer {
        attachment_id: Bytes::from_static(&[0x44; 16]),
        key: Bytes::from_static(&[0x55; 32]),
        digest: Bytes::from_static(&[0x66; 32]),
        size: 123_456,
        content_type: "image/jpeg".into(),
        file_name: "cat.jpg".into(),
        caption: "a cat".into(),
        thumbnail: Bytes::from_static(b"\xff\xd8thumb"),
        width: 640,
        height: 480,
    }
}

fn group_change() -> GroupChange {
    GroupChange {
        group_id: Bytes::copy_from_slice(&GROUP),
        version: 1,
        kind: GroupChangeKind::Created.into(),
        usernames: vec!["bob".into(), "carol".into()],
        role: GroupRole::Unspecified.into(),
        metadata: Some(GroupMetadata {
            name: "Cats".into(),
            description: "about cats".into(),
            avatar: Some(pointer()),
        }),
        metadata_key: Bytes::from_static(&[0x77; 32]),
    }
}

/// One valid `Content` of every body kind (and every call signal).
fn every_variant() -> Vec<Content> {
    vec![
        Content::text(ID, TS, "hello"),
        Content::reply(ID, TS, "me too", ReplyTo::new(TARGET, "alice", "hello")),
        Content::reaction(ID, TS, TARGET, "👍", false),
        Content::reaction(ID, TS, TARGET, "👍", true),
        Content::edit(ID, TS, TARGET, 1, "hello, world"),
        Content::delete(ID, TS, TARGET),
        Content::read_receipt(ID, TS, [TARGET, [0x23; 16]]),
        Content::delivery_receipt(ID, TS, [TARGET]),
        Content::typing(ID, TS, TypingAction::Started),
        Content::typing(ID, TS, TypingAction::Stopped),
        Content::attachment(ID, TS, pointer()),
        Content::group_change(ID, TS, group_change()),
        Content::sender_key_distribution(ID, TS, GROUP, Bytes::from_static(&[0x01; 73])),
        Content::call_signal(
            ID,
            TS,
            [0x88; 16],
            call_signal::Signal::Offer(CallOffer {
                sdp: "v=0\r\n".into(),
                video: true,
            }),
        ),
        Content::call_signal(
            ID,
            TS,
            [0x88; 16],
            call_signal::Signal::Answer(CallAnswer {
                sdp: "v=0\r\n".into(),
            }),
        ),
        Content::call_signal(
            ID,
            TS,
            [0x88; 16],
            call_signal::Signal::IceCandidate(CallIceCandidate {
                candidate: "candidate:1 1 UDP 2122252543 192.0.2.1 54400 typ host".into(),
                sdp_mid: "0".into(),
                sdp_mline_index: 0,
            }),
        ),
        Content::call_signal(
            ID,
            TS,
            [0x88; 16],
            call_signal::Signal::Hangup(CallHangup {
                reason: HangupReason::Declined.into(),
            }),
        ),
        Content::text(ID, TS, "in a group").in_group(GROUP),
    ]
}

#[test]
fn every_variant_round_trips_and_validates() {
    let variants = every_variant();
    let kinds: std::collections::BTreeSet<&str> = variants
        .iter()
        .filter_map(|c| c.body.as_ref())
        .map(Body::kind_name)
        .collect();
    assert_eq!(kinds.len(), 11, "every body kind is covered: {kinds:?}");
    for content in variants {
        content.validate().unwrap();
        let bytes = content.encode_to_vec();
        let decoded = decode_content(&bytes).unwrap();
        assert_eq!(decoded, content);
        assert_eq!(decoded.id(), Some(ID));
        // Padded, it still round trips, to a multiple of the bucket.
        let mut padded = content.clone();
        pad_to_bucket(&mut padded);
        let bytes = padded.encode_to_vec();
        assert_eq!(bytes.len() % PADDING_BUCKET, 0);
        let decoded = decode_content(&bytes).unwrap();
        assert_eq!(decoded.body, content.body);
        assert!(decoded.padding.iter().all(|&b| b == 0));
    }
}

#[test]
fn debug_output_hides_plaintext_and_keys() {
    let secret_text = "my secret plan";
    let content = Content::text(ID, TS, secret_text);
    let debug = format!("{content:?}");
    assert!(!debug.contains(secret_text), "{debug}");
    assert!(debug.contains("text"), "{debug}");
    let attachment = Content::attachment(ID, TS, pointer());
    let debug = format!("{attachment:?} {:?}", pointer());
    assert!(
        !debug.contains("55, 55") && !debug.contains("5555"),
        "{debug}"
    );
    assert!(!debug.contains("cat.jpg"), "{debug}");
    let change = format!("{:?}", group_change());
    assert!(
        !change.contains("Cats") && !change.contains("7777"),
        "{change}"
    );
}

fn assert_refused(content: &Content, check: impl Fn(&ContentError) -> bool) {
    let error = content.validate().unwrap_err();
    assert!(check(&error), "unexpected error {error:?}");
    let error = decode_content(&content.encode_to_vec()).unwrap_err();
    assert!(check(&error), "unexpected error {error:?}");
}

#[test]
fn ids_of_the_wrong_length_are_refused() {
    let mut content = Content::text(ID, TS, "hi");
    content.message_id = Bytes::from_static(&[1; 15]);
    assert_refused(&content, |e| {
        matches!(
            e,
            ContentError::WrongLength {
                field: "content.message_id",
                len: 15,
                expected: 16
            }
        )
    });
    let mut content = Content::delete(ID, TS, TARGET);
    if let Some(Body::Delete(delete)) = &mut content.body {
        delete.target_message_id = Bytes::new();
    }
    assert_refused(&content, |e| {
        matches!(
            e,
            ContentError::WrongLength {
                field: "delete.target_message_id",
                len: 0,
                ..
            }
        )
    });
    let mut content = Content::text(ID, TS, "hi");
    content.group_id = Bytes::from_static(&[1; 17]);
    assert_refused(&content, |e| {
        matches!(
            e,
            ContentError::WrongLength {
                field: "content.group_id",
                ..
            }
        )
    });
    let mut bad_key = pointer();
    bad_key.key = Bytes::from_static(&[0; 31]);
    assert_refused(&Content::attachment(ID, TS, bad_key), |e| {
        matches!(
            e,
            ContentError::WrongLength {
                field: "attachment.key",
                len: 31,
                expected: 32
            }
        )
    });
    let mut bad_digest = pointer();
    bad_digest.digest = Bytes::new();
    assert_refused(&Content::attachment(ID, TS, bad_digest), |e| {
        matches!(
            e,
            ContentError::WrongLength {
                field: "attachment.digest",
                ..
            }
        )
    });
}

#[test]
fn a_missing_or_unknown_body_is_unsupported() {
    let mut content = Content::text(ID, TS, "hi");
    content.body = None;
    assert_refused(&content, |e| matches!(e, ContentError::UnsupportedBody));
    // A body kind from a later version (field 40) decodes as no body.
    let mut bytes = Content::text(ID, TS, "hi").encode_to_vec();
    bytes.truncate(2 + 16 + 1 + 6); // message_id and sent_at_ms only
    bytes.extend_from_slice(&[0xc2, 0x02, 0x00]); // field 40, length 0
    assert!(matches!(
        decode_content(&bytes),
        Err(ContentError::UnsupportedBody)
    ));
}

#[test]
fn limits_are_enforced() {
    let long = "x".repeat(MAX_TEXT_LEN + 1);
    assert_refused(&Content::text(ID, TS, long.clone()), |e| {
        matches!(
            e,
            ContentError::TooLong {
                field: "text.text",
                ..
            }
        )
    });
    Content::text(ID, TS, "x".repeat(MAX_TEXT_LEN))
        .validate()
        .unwrap();
    assert_refused(&Content::text(ID, TS, ""), |e| {
        matches!(e, ContentError::Empty { field: "text.text" })
    });
    assert_refused(&Content::edit(ID, TS, TARGET, 0, "new"), |e| {
        matches!(
            e,
            ContentError::TooSmall {
                field: "edit.revision",
                value: 0,
                min: 1
            }
        )
    });
    assert_refused(&Content::reaction(ID, TS, TARGET, "", false), |e| {
        matches!(
            e,
            ContentError::Empty {
                field: "reaction.emoji"
            }
        )
    });
    let many = vec![TARGET; MAX_RECEIPT_IDS + 1];
    assert_refused(&Content::read_receipt(ID, TS, many), |e| {
        matches!(
            e,
            ContentError::TooMany {
                field: "read_receipt.message_ids",
                ..
            }
        )
    });
    assert_refused(&Content::delivery_receipt(ID, TS, []), |e| {
        matches!(e, ContentError::Empty { .. })
    });
    assert_refused(&Content::typing(ID, TS, TypingAction::Unspecified), |e| {
        matches!(
            e,
            ContentError::InvalidEnum {
                field: "typing.action",
                value: 0
            }
        )
    });
    let mut change = group_change();
    change.kind = GroupChangeKind::RoleChanged.into();
    assert_refused(&Content::group_change(ID, TS, change.clone()), |e| {
        matches!(
            e,
            ContentError::InvalidEnum {
                field: "group_change.role",
                ..
            }
        )
    });
    change.role = GroupRole::Admin.into();
    Content::group_change(ID, TS, change.clone())
        .validate()
        .unwrap();
    change.usernames.clear();
    assert_refused(&Content::group_change(ID, TS, change), |e| {
        matches!(
            e,
            ContentError::Empty {
                field: "group_change.usernames"
            }
        )
    });
    let mut unversioned = group_change();
    unversioned.version = 0;
    assert_refused(&Content::group_change(ID, TS, unversioned), |e| {
        matches!(
            e,
            ContentError::TooSmall {
                field: "group_change.version",
                ..
            }
        )
    });
    let mut no_signal = Content::call_signal(
        ID,
        TS,
        [1; 16],
        call_signal::Signal::Hangup(CallHangup::default()),
    );
    if let Some(Body::CallSignal(signal)) = &mut no_signal.body {
        signal.signal = None;
    }
    assert_refused(&no_signal, |e| {
        matches!(
            e,
            ContentError::Missing {
                field: "call_signal.signal"
            }
        )
    });
}

#[test]
fn oversize_content_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_CONTENT_LEN + 1];
    assert!(matches!(
        decode_content(&bytes),
        Err(ContentError::TooLarge { len, max: MAX_CONTENT_LEN }) if len == MAX_CONTENT_LEN + 1
    ));
    // Garbage within the limit is a decode error, not a panic.
    assert!(matches!(
        decode_content(&[0xff, 0xff]),
        Err(ContentError::Decode(_))
    ));
    // Invalid UTF-8 in a string field.
    let mut bytes = Content::text(ID, TS, "hi").encode_to_vec();
    let last = bytes.len() - 1;
    bytes[last] = 0xff;
    assert!(matches!(
        decode_content(&bytes),
        Err(ContentError::Decode(_))
    ));
}

#[test]
fn padding_rule_matches_the_formula() {
    for unpadded in 1..2000usize {
        let total = padded_len(unpadded);
        assert_eq!(total % PADDING_BUCKET, 0);
        assert!(total >= unpadded + 3);
        let pad = padding_len(unpadded);
        assert!(pad >= 1);
        let varint_len = if pad < 128 { 1 } else { 2 };
        assert_eq!(
            unpadded + 1 + varint_len + pad,
            total,
            "unpadded {unpadded}"
        );
        // The smallest bucket that works.
        assert!(total - unpadded <= PADDING_BUCKET + 2 || total - unpadded == 290);
    }
    // The one gap: 130 bytes of room cannot be filled exactly.
    assert_eq!(padded_len(30), 320);
    assert_eq!(padding_len(30), 287);
    assert_eq!(padded_len(31), 160);
    assert_eq!(padding_len(31), 127);
    assert_eq!(padded_len(157), 160);
    assert_eq!(padding_len(157), 1);
    // Two bytes of room cannot hold a non-empty padding field.
    assert_eq!(padded_len(158), 320);
    assert_eq!(padding_len(158), 159);
    assert_eq!(padded_len(160), 320);
}

#[test]
fn padding_replaces_earlier_padding() {
    let mut content = Content::text(ID, TS, "hi");
    content.padding = Bytes::from_static(&[9; 500]);
    pad_to_bucket(&mut content);
    assert_eq!(content.encoded_len() % PADDING_BUCKET, 0);
    assert!(content.padding.len() < 300);
}

proptest! {
    #[test]
    fn padded_content_is_always_a_bucket_multiple(text in "\\PC{1,600}", ts in any::<u64>(), id in any::<[u8; 16]>()) {
        let mut content = Content::text(id, ts, text);
        let unpadded = content.encoded_len();
        pad_to_bucket(&mut content);
        let bytes = content.encode_to_vec();
        prop_assert_eq!(bytes.len(), padded_len(unpadded));
        prop_assert_eq!(bytes.len() % PADDING_BUCKET, 0);
        prop_assert!(decode_content(&bytes).is_ok());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_content(&bytes);
    }
}
