//! Targets over the protobuf messages (SPEC.md §11, §12): `client_frame`
//! (what the server parses), `server_frame` (what the client parses),
//! `content` (what the client parses after decryption), and `convergence`
//! (the edit/delete state fed arbitrary events).
//!
//! Every decode must return a value or an error. When it returns a value,
//! encode → decode gives the same value and the same bytes again.

use arbitrary::{Arbitrary, Unstructured};
use microbot_protocol::codec::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, encode_frame_to_vec};
use microbot_protocol::content::{Content, GroupMetadata};
use microbot_protocol::convergence::{EditVersion, MessageEvent, MessageState, Original};
use microbot_protocol::decode_content;
use microbot_protocol::padding::{PADDING_BUCKET, pad_to_bucket};
use microbot_protocol::transport::{AttachmentStreamHeader, ClientFrame, ServerFrame};
use prost::Message;

use crate::mutate::sequence;

/// Decodes `data` as an `M`; when that works, checks that encode → decode is
/// stable and returns the message.
fn round_trip<M: Message + Default + PartialEq>(data: &[u8]) -> Option<M> {
    let message = M::decode(data).ok()?;
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len(), "encoded_len is wrong");
    let again = M::decode(encoded.as_slice());
    assert!(
        matches!(again, Ok(ref m) if *m == message),
        "decode → encode → decode changed the message"
    );
    if let Ok(again) = again {
        assert_eq!(again.encode_to_vec(), encoded, "re-encoding is not stable");
    }
    Some(message)
}

/// Frames `message`, decodes the frame back, and checks it is the same message.
fn frame_round_trip<M: Message + Default + PartialEq>(message: &M) {
    let Ok(frame) = encode_frame_to_vec(message) else {
        assert!(message.encoded_len() > DEFAULT_MAX_FRAME_LEN);
        return;
    };
    let mut decoder = FrameDecoder::default();
    assert!(decoder.push(&frame).is_ok(), "own frame refused");
    assert!(
        matches!(decoder.next_message::<M>(), Ok(Some(ref m)) if m == message),
        "framed message came back different"
    );
    assert_eq!(decoder.buffered_len(), 0);
}

/// Target `client_frame`: `ClientFrame` (every request the server parses),
/// and `AttachmentStreamHeader` (the first frame of an attachment stream).
pub fn client_frame(data: &[u8]) {
    if let Some(frame) = round_trip::<ClientFrame>(data) {
        frame_round_trip(&frame);
        // Debug output of parsed requests must not panic (it is logged).
        let _ = format!("{frame:?}");
    }
    if let Some(header) = round_trip::<AttachmentStreamHeader>(data) {
        frame_round_trip(&header);
    }
}

/// Target `server_frame`: `ServerFrame` (every response and push a client parses).
pub fn server_frame(data: &[u8]) {
    if let Some(frame) = round_trip::<ServerFrame>(data) {
        frame_round_trip(&frame);
        let _ = format!("{frame:?}");
    }
}

/// Target `content`: `decode_content` (the validating entry point) and the
/// raw `Content` and `GroupMetadata` decoders.
///
/// For content that validates: re-encoding validates again to the same
/// value; padding makes the encoding a multiple of the bucket and changes
/// nothing else; the convergence adapter and `Debug` do not panic.
pub fn content(data: &[u8]) {
    let raw = round_trip::<Content>(data);
    let _ = round_trip::<GroupMetadata>(data);
    let Ok(content) = decode_content(data) else {
        return;
    };
    assert!(
        raw.is_some(),
        "decode_content accepted what Content::decode refused"
    );
    assert!(content.validate().is_ok());
    let encoded = content.encode_to_vec();
    assert!(
        matches!(decode_content(&encoded), Ok(ref c) if *c == content),
        "valid content does not survive re-encoding"
    );
    let mut padded = content.clone();
    pad_to_bucket(&mut padded);
    let padded_bytes = padded.encode_to_vec();
    assert_eq!(
        padded_bytes.len() % PADDING_BUCKET,
        0,
        "padded length {} is not a multiple of the bucket",
        padded_bytes.len()
    );
    assert!(padded.padding.iter().all(|&b| b == 0));
    let mut unpadded = Content::decode(padded_bytes.as_slice())
        .unwrap_or_else(|_| panic!("padded content does not decode"));
    unpadded.padding = content.padding.clone();
    assert!(unpadded == content, "padding changed another field");
    let _ = MessageEvent::from_content(&content);
    let _ = format!("{content:?}");
}

/// One event for [`convergence`], built from fuzz input.
#[derive(Debug, Arbitrary)]
enum EventInput {
    Original {
        sent_at_ms: u64,
        text: String,
    },
    Edit {
        revision: u64,
        edited_at_ms: u64,
        edit_id: [u8; 16],
        text: String,
    },
    Delete,
}

impl EventInput {
    fn event(&self) -> MessageEvent {
        match self {
            EventInput::Original { sent_at_ms, text } => MessageEvent::Original(Original {
                sent_at_ms: *sent_at_ms,
                text: text.clone(),
            }),
            EventInput::Edit {
                revision,
                edited_at_ms,
                edit_id,
                text,
            } => MessageEvent::Edit(EditVersion {
                revision: *revision,
                edited_at_ms: *edited_at_ms,
                edit_id: *edit_id,
                text: text.clone(),
            }),
            EventInput::Delete => MessageEvent::Delete,
        }
    }
}

/// Most events one input builds.
const MAX_EVENTS: usize = 64;

/// Target `convergence` (SPEC.md §11.4): the same events applied in order,
/// in reverse, rotated with duplicates, and as a merge of two halves must
/// give equal states and views.
pub fn convergence(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(rotation) = u.arbitrary::<u8>() else {
        return;
    };
    let events: Vec<EventInput> = sequence(u, MAX_EVENTS);
    let fold = |order: &mut dyn Iterator<Item = &EventInput>| {
        let mut state = MessageState::new();
        for input in order {
            state.apply(input.event());
        }
        state
    };
    let forward = fold(&mut events.iter());
    let backward = fold(&mut events.iter().rev());
    let split = usize::from(rotation) % (events.len() + 1);
    let (head, tail) = events.split_at(split);
    let rotated = fold(&mut tail.iter().chain(head).chain(head.iter().rev()));
    let mut merged = fold(&mut head.iter());
    merged.merge(fold(&mut tail.iter()));
    for other in [&backward, &rotated, &merged] {
        assert!(*other == forward, "events did not converge");
        assert!(other.view() == forward.view());
        assert_eq!(other.latest_revision(), forward.latest_revision());
    }
}
