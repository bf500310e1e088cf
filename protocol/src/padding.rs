//! Content padding: SPEC.md §11.3.
//!
//! The sender fills `Content.padding` with zero bytes so that the encoded
//! `Content` is a multiple of [`PADDING_BUCKET`] bytes long; the ciphertext
//! then reveals only a bucket, not the exact length. Receivers ignore the
//! field. Not owned here: validation ([`crate::content_rules`]).
//!
//! The field's own overhead is one tag byte (field 15, wire type 2: `0x7a`)
//! plus the varint of the padding length, so the rule is: with `L` the
//! encoded length without padding, the padded length `T` is the smallest
//! multiple of 160 with `T ≥ L + 3` (at least one padding byte: protobuf
//! omits an empty field), except that `T − L = 130` cannot be reached (128
//! padding bytes need a two-byte varint: 131 bytes; 127 need one: 129), so
//! `T` then moves up by one bucket.

use bytes::Bytes;
use prost::Message;

use crate::content::Content;

/// Encoded `Content` lengths are padded to a multiple of this many bytes.
pub const PADDING_BUCKET: usize = 160;

/// Enough zeros for the longest padding ([`padding_len`] is at most 287).
static ZEROS: [u8; 2 * PADDING_BUCKET] = [0; 2 * PADDING_BUCKET];

/// The encoded length of a `Content` whose encoding without padding is
/// `unpadded_len` bytes, once padded (§11.3).
pub fn padded_len(unpadded_len: usize) -> usize {
    let minimum = unpadded_len.saturating_add(3);
    let mut total = minimum
        .div_ceil(PADDING_BUCKET)
        .saturating_mul(PADDING_BUCKET);
    if total.saturating_sub(unpadded_len) == 130 {
        total = total.saturating_add(PADDING_BUCKET);
    }
    total
}

/// How many zero bytes go into `Content.padding` for a `Content` whose
/// encoding without padding is `unpadded_len` bytes (1 to 287).
pub fn padding_len(unpadded_len: usize) -> usize {
    // The field costs 1 tag byte + its varint length (1 byte below 128, else 2).
    let room = padded_len(unpadded_len).saturating_sub(unpadded_len);
    if room <= 129 {
        room.saturating_sub(2)
    } else {
        room.saturating_sub(3)
    }
}

/// Sets `content.padding` (replacing any) so its encoding is padded to the
/// bucket of §11.3. The padding shares one static buffer: no allocation.
pub fn pad_to_bucket(content: &mut Content) {
    content.padding = Bytes::new();
    let len = padding_len(content.encoded_len());
    content.padding = match ZEROS.get(..len) {
        Some(zeros) => Bytes::from_static(zeros),
        None => Bytes::from(vec![0; len]),
    };
}
