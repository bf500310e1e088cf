//! The test message: a fixed-size payload that carries its send time, so
//! the receiver measures end-to-end latency without clock agreement (sender
//! and receiver run in the same load-generator process and share one
//! monotonic [`Clock`]).
//!
//! Layout (big-endian): `sent_us` (8) ‖ `seq` (8) ‖ `sender` (4) ‖ filler.
//! For the server the bytes are opaque ciphertext; nothing here encrypts.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of one message (the workload size).
pub const PAYLOAD_LEN: usize = 256;
/// Bytes of the header inside the payload.
pub const HEADER_LEN: usize = 20;

/// A monotonic microsecond clock shared by senders and receivers.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// Starts the clock now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The instant `us` microseconds after the start.
    pub fn instant_at(&self, us: u64) -> Instant {
        self.base + std::time::Duration::from_micros(us)
    }
}

/// What a receiver reads back from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// When the message was (or was scheduled to be) sent, clock µs.
    pub sent_us: u64,
    /// Sequence number within the sender.
    pub seq: u64,
    /// Index of the sending device in the workload.
    pub sender: u32,
}

/// Builds a payload of `len` bytes (at least [`HEADER_LEN`]).
pub fn encode(stamp: Stamp, len: usize) -> Bytes {
    let len = len.max(HEADER_LEN);
    let mut buf = BytesMut::with_capacity(len);
    buf.put_u64(stamp.sent_us);
    buf.put_u64(stamp.seq);
    buf.put_u32(stamp.sender);
    buf.resize(len, 0xA5);
    buf.freeze()
}

/// Reads the stamp back; `None` for bytes that are not a payload.
pub fn decode(bytes: &[u8]) -> Option<Stamp> {
    let sent_us = u64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    let sender = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    Some(Stamp {
        sent_us,
        seq,
        sender,
    })
}

/// The same stamp as text of `len` characters, for the SDK path where the
/// payload is a text message: `sent_us:seq:sender:` then filler.
pub fn encode_text(stamp: Stamp, len: usize) -> String {
    let mut text = format!("{}:{}:{}:", stamp.sent_us, stamp.seq, stamp.sender);
    while text.len() < len {
        text.push('x');
    }
    text
}

/// Reads a stamp from [`encode_text`] output.
pub fn decode_text(text: &str) -> Option<Stamp> {
    let mut parts = text.splitn(4, ':');
    Some(Stamp {
        sent_us: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        sender: parts.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_in_bytes_and_text() {
        let stamp = Stamp {
            sent_us: 123_456_789,
            seq: 42,
            sender: 7,
        };
        let bytes = encode(stamp, PAYLOAD_LEN);
        assert_eq!(bytes.len(), PAYLOAD_LEN);
        assert_eq!(decode(&bytes), Some(stamp));
        assert_eq!(decode(&bytes[..10]), None);
        let text = encode_text(stamp, PAYLOAD_LEN);
        assert_eq!(text.len(), PAYLOAD_LEN);
        assert_eq!(decode_text(&text), Some(stamp));
        assert_eq!(decode_text("hello"), None);
    }
}
