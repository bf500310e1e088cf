//! `SyncMessage` (SPEC.md §11.7): the pinned example and the validity rules
//! a receiver applies before honouring a transcript.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use microbot_protocol::content::content::Body;
use microbot_protocol::content::{Content, sent_transcript, sync_message};
use microbot_protocol::{ContentError, MessageId, decode_content};
use prost::Message;

const ID_A: MessageId = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
const ID_B: MessageId = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
const GROUP: [u8; 16] = [7; 16];

/// SPEC.md §11.7 example: the transcript of §11.6 example 1 sent to "bob".
const TRANSCRIPT_HEX: &str = "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff1080d095ffbc3182012f0a2d0a03626f621a1f0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a0268692080d095ffbc31";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn transcript_mut(content: &mut Content) -> &mut microbot_protocol::content::SentTranscript {
    let Some(Body::Sync(sync)) = content.body.as_mut() else {
        panic!("not a sync message")
    };
    let Some(sync_message::Kind::Sent(sent)) = sync.kind.as_mut() else {
        panic!("not a transcript")
    };
    sent
}

#[test]
fn transcript_example() {
    let text = Content::text(ID_A, 1_700_000_000_000, "hi");
    let sync = Content::sync_sent(ID_B, 1_700_000_000_000, "bob", &text);
    let bytes = sync.encode_to_vec();
    assert_eq!(hex(&bytes), TRANSCRIPT_HEX);
    assert_eq!(decode_content(&bytes).unwrap(), sync);
}

#[test]
fn a_transcript_drops_the_padding_of_what_it_carries() {
    let mut text = Content::text(ID_A, 1, "hi");
    microbot_protocol::padding::pad_to_bucket(&mut text);
    let mut sync = Content::sync_sent(ID_B, 1, "bob", &text);
    assert!(
        transcript_mut(&mut sync)
            .content
            .as_ref()
            .unwrap()
            .padding
            .is_empty()
    );
}

#[test]
fn group_content_is_filed_under_its_group() {
    let text = Content::text(ID_A, 1, "hi").in_group(GROUP);
    let mut sync = Content::sync_sent(ID_B, 1, "ignored", &text);
    sync.validate().unwrap();
    assert!(matches!(
        &transcript_mut(&mut sync).destination,
        Some(sent_transcript::Destination::DestinationGroupId(id)) if id.as_ref() == GROUP
    ));
}

#[test]
fn a_transcript_inside_a_transcript_is_refused() {
    let text = Content::text(ID_A, 1, "hi");
    let inner = Content::sync_sent(ID_B, 1, "bob", &text);
    let outer = Content::sync_sent(ID_A, 1, "bob", &inner);
    assert!(matches!(
        decode_content(&outer.encode_to_vec()),
        Err(ContentError::InvalidSync { .. })
    ));
}

#[test]
fn incomplete_or_mismatched_transcripts_are_refused() {
    let text = Content::text(ID_A, 1, "hi");
    let mut no_content = Content::sync_sent(ID_B, 1, "bob", &text);
    transcript_mut(&mut no_content).content = None;
    assert!(matches!(
        no_content.validate(),
        Err(ContentError::Missing {
            field: "sent_transcript.content"
        })
    ));

    let mut no_destination = Content::sync_sent(ID_B, 1, "bob", &text);
    transcript_mut(&mut no_destination).destination = None;
    assert!(matches!(
        no_destination.validate(),
        Err(ContentError::Missing {
            field: "sent_transcript.destination"
        })
    ));

    let mut long_name = Content::sync_sent(ID_B, 1, "bob", &text);
    transcript_mut(&mut long_name).destination = Some(
        sent_transcript::Destination::DestinationUsername("x".repeat(33)),
    );
    assert!(matches!(
        long_name.validate(),
        Err(ContentError::TooLong { .. })
    ));

    let grouped = Content::text(ID_A, 1, "hi").in_group(GROUP);
    let mut other_group = Content::sync_sent(ID_B, 1, "bob", &grouped);
    transcript_mut(&mut other_group).destination = Some(
        sent_transcript::Destination::DestinationGroupId(Bytes::from_static(&[9; 16])),
    );
    assert!(matches!(
        other_group.validate(),
        Err(ContentError::InvalidSync { .. })
    ));

    let mut invalid_inner = Content::sync_sent(ID_B, 1, "bob", &text);
    transcript_mut(&mut invalid_inner)
        .content
        .as_mut()
        .unwrap()
        .message_id = Bytes::from_static(b"short");
    assert!(matches!(
        invalid_inner.validate(),
        Err(ContentError::WrongLength { .. })
    ));

    let mut no_kind = Content::sync_sent(ID_B, 1, "bob", &text);
    if let Some(Body::Sync(sync)) = no_kind.body.as_mut() {
        sync.kind = None;
    }
    assert!(matches!(
        no_kind.validate(),
        Err(ContentError::Missing { field: "sync.kind" })
    ));
}
