//! The hex examples printed in SPEC.md §10.5 and §11.6, pinned: if an
//! encoding changes, this test fails and the spec must change with it.

use microbot_protocol::codec::encode_frame_to_vec;
use microbot_protocol::content::Content;
use microbot_protocol::padding::pad_to_bucket;
use microbot_protocol::{MessageId, decode_content};
use prost::Message;

const ID_A: MessageId = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
const ID_B: MessageId = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

const TEXT_HEX: &str = "0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a026869";
const FRAME_HEX: &str = "1f0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a026869";
const EDIT_HEX: &str = "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff10e0a499ffbc312a1b0a10000102030405060708090a0b0c0d0e0f120568656c6c6f1801";
const DELETE_HEX: &str =
    "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff10c0f99cffbc3132120a10000102030405060708090a0b0c0d0e0f";
const REACTION_HEX: &str = "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff10f4d395ffbc3122180a10000102030405060708090a0b0c0d0e0f1204f09f918d";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn check(content: &Content, expected_hex: &str) {
    assert_eq!(hex(&content.encode_to_vec()), expected_hex);
    assert_eq!(&decode_content(&unhex(expected_hex)).unwrap(), content);
}

#[test]
fn text_example() {
    check(&Content::text(ID_A, 1_700_000_000_000, "hi"), TEXT_HEX);
}

#[test]
fn frame_example() {
    let content = Content::text(ID_A, 1_700_000_000_000, "hi");
    assert_eq!(hex(&encode_frame_to_vec(&content).unwrap()), FRAME_HEX);
}

#[test]
fn padded_text_example() {
    let mut content = Content::text(ID_A, 1_700_000_000_000, "hi");
    pad_to_bucket(&mut content);
    let bytes = content.encode_to_vec();
    assert_eq!(bytes.len(), 160);
    // The unpadded 31 bytes, then field 15 (0x7a), length 127 (0x7f), 127 zeros.
    let mut expected = TEXT_HEX.to_owned();
    expected.push_str("7a7f");
    expected.push_str(&"00".repeat(127));
    assert_eq!(hex(&bytes), expected);
}

#[test]
fn edit_delete_and_reaction_examples() {
    check(
        &Content::edit(ID_B, 1_700_000_060_000, ID_A, 1, "hello"),
        EDIT_HEX,
    );
    check(&Content::delete(ID_B, 1_700_000_120_000, ID_A), DELETE_HEX);
    check(
        &Content::reaction(ID_B, 1_700_000_000_500, ID_A, "👍", false),
        REACTION_HEX,
    );
}

/// SPEC.md §11.1 reproduces `proto/content.proto`; they must not drift.
#[test]
fn spec_reproduces_content_proto() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = std::fs::read_to_string(root.join("proto/content.proto")).unwrap();
    let spec = std::fs::read_to_string(root.join("../SPEC.md")).unwrap();
    assert!(
        spec.contains(proto.trim_end()),
        "SPEC.md §11.1 must contain proto/content.proto verbatim"
    );
}
