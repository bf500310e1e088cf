//! The frame length prefix: a canonical protobuf varint (LEB128) of at most
//! 10 bytes (SPEC.md §10.2).
//!
//! Only parsing lives here; encoding uses `prost::encoding::encode_varint`,
//! which always produces the canonical form.

use super::FrameError;

/// The longest allowed length prefix, in bytes (a varint of a `u64`).
pub const MAX_PREFIX_LEN: usize = 10;

/// A fully received length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// Number of bytes the prefix occupies.
    pub(crate) len: usize,
    /// The body length it announces.
    pub(crate) value: u64,
}

/// Parses the length prefix at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only the beginning of a prefix that may
/// still become valid. Refuses, as soon as the bytes show it:
/// - a varint whose tenth byte is not `0x00` or `0x01` (longer than 10 bytes
///   or over 64 bits);
/// - a varint of two bytes or more whose last byte is `0x00` (not canonical).
pub(crate) fn parse_prefix(buf: &[u8]) -> Result<Option<Prefix>, FrameError> {
    let mut value: u64 = 0;
    for (index, &byte) in buf.iter().take(MAX_PREFIX_LEN).enumerate() {
        if index == MAX_PREFIX_LEN - 1 && byte > 0x01 {
            return Err(FrameError::InvalidLengthPrefix);
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            if index > 0 && byte == 0 {
                return Err(FrameError::InvalidLengthPrefix);
            }
            return Ok(Some(Prefix {
                len: index + 1,
                value,
            }));
        }
    }
    Ok(None)
}
