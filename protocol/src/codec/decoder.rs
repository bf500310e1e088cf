//! The streaming frame decoder (SPEC.md §10.3).
//!
//! Invariants, held after every call:
//! - `buf[..complete_len]` is a sequence of whole frames whose prefixes were
//!   validated (canonical, not oversize);
//! - `buf[complete_len..]` is the start of at most one frame: fewer than
//!   [`MAX_PREFIX_LEN`] bytes if its prefix is not complete yet, otherwise
//!   fewer than `prefix + announced length` bytes, which is at most
//!   `max_frame_len + MAX_PREFIX_LEN`.
//!
//! So a peer can make the decoder hold at most `max_frame_len + 10` bytes of
//! an unfinished frame; whole frames stay buffered only until the caller
//! takes them with [`FrameDecoder::next_frame`].

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::FrameError;
use super::prefix::{MAX_PREFIX_LEN, Prefix, parse_prefix};

/// Splits a byte stream into frames. Bytes may arrive split at any point.
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_len: usize,
    /// Length of the run of whole, validated frames at the front of `buf`.
    complete_len: usize,
    /// The parsed prefix of the unfinished frame at `buf[complete_len..]`.
    pending: Option<PendingFrame>,
}

/// The prefix of the unfinished frame, once it has been received in full.
#[derive(Debug, Clone, Copy)]
struct PendingFrame {
    /// Prefix length plus announced body length.
    frame_len: usize,
}

impl FrameDecoder {
    /// A decoder accepting frame bodies of at most `max_frame_len` bytes.
    ///
    /// A limit above `usize::MAX - 10` is lowered to `usize::MAX - 10`, so that
    /// a whole frame's length always fits in a `usize`.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame_len: max_frame_len.min(usize::MAX - MAX_PREFIX_LEN),
            complete_len: 0,
            pending: None,
        }
    }

    /// The largest frame body this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Appends received bytes.
    ///
    /// Validates every length prefix the new bytes complete, so an oversize or
    /// invalid prefix is refused here, before its body is buffered.
    ///
    /// # Errors
    /// [`FrameError::Oversize`] or [`FrameError::InvalidLengthPrefix`]. On
    /// error none of `bytes` is kept (frames completed by them included) and the
    /// decoder is exactly as before the call; the stream cannot be
    /// resynchronised and should be closed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let saved_len = self.buf.len();
        let saved_complete = self.complete_len;
        let saved_pending = self.pending;
        self.buf.extend_from_slice(bytes);
        if let Err(error) = self.scan() {
            self.buf.truncate(saved_len);
            self.complete_len = saved_complete;
            self.pending = saved_pending;
            return Err(error);
        }
        Ok(())
    }

    /// Advances `complete_len` over every whole frame now buffered.
    fn scan(&mut self) -> Result<(), FrameError> {
        loop {
            let tail = self.buf.get(self.complete_len..).unwrap_or_default();
            let pending = match self.pending {
                Some(pending) => pending,
                None => match parse_prefix(tail)? {
                    None => return Ok(()),
                    Some(prefix) => self.check(prefix)?,
                },
            };
            if tail.len() < pending.frame_len {
                self.pending = Some(pending);
                return Ok(());
            }
            self.complete_len += pending.frame_len;
            self.pending = None;
        }
    }

    /// Checks a prefix against the limit, before anything is allocated for it.
    fn check(&self, prefix: Prefix) -> Result<PendingFrame, FrameError> {
        let oversize = FrameError::Oversize {
            length: prefix.value,
            max: self.max_frame_len,
        };
        let body_len = usize::try_from(prefix.value).map_err(|_| oversize)?;
        if body_len > self.max_frame_len {
            return Err(FrameError::Oversize {
                length: prefix.value,
                max: self.max_frame_len,
            });
        }
        Ok(PendingFrame {
            // Cannot overflow: max_frame_len <= usize::MAX - MAX_PREFIX_LEN.
            frame_len: prefix.len + body_len,
        })
    }

    /// Takes the next whole frame body, or `Ok(None)` if more bytes are needed.
    ///
    /// The body shares the decoder's buffer (no copy). A zero-length frame
    /// yields an empty body.
    ///
    /// # Errors
    /// None in practice: prefixes are validated by [`FrameDecoder::push`]. A
    /// prefix that fails to re-parse is reported as
    /// [`FrameError::InvalidLengthPrefix`] and nothing is consumed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.complete_len == 0 {
            return Ok(None);
        }
        let prefix = parse_prefix(&self.buf)?.ok_or(FrameError::InvalidLengthPrefix)?;
        let body_len =
            usize::try_from(prefix.value).map_err(|_| FrameError::InvalidLengthPrefix)?;
        let frame_len = prefix
            .len
            .checked_add(body_len)
            .filter(|&len| len <= self.complete_len)
            .ok_or(FrameError::InvalidLengthPrefix)?;
        self.buf.advance(prefix.len);
        let body = self.buf.split_to(body_len).freeze();
        self.complete_len -= frame_len;
        Ok(Some(body))
    }

    /// Takes the next whole frame and decodes it as an `M`, or `Ok(None)` if
    /// more bytes are needed.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] if the body is not a valid `M`; that frame is
    /// consumed and the following frames can still be read.
    pub fn next_message<M: prost::Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        match self.next_frame()? {
            None => Ok(None),
            Some(body) => M::decode(body).map(Some).map_err(FrameError::Malformed),
        }
    }

    /// Bytes buffered and not yet taken (whole frames and the unfinished one).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Checks, at the end of the stream, that no frame was cut short.
    ///
    /// Whole frames not yet taken are not an error.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] if part of a frame is buffered.
    pub fn finish(&self) -> Result<(), FrameError> {
        let buffered = self.buf.len().saturating_sub(self.complete_len);
        if buffered == 0 {
            Ok(())
        } else {
            Err(FrameError::Truncated { buffered })
        }
    }
}

impl Default for FrameDecoder {
    /// A decoder with [`super::DEFAULT_MAX_FRAME_LEN`].
    fn default() -> Self {
        Self::new(super::DEFAULT_MAX_FRAME_LEN)
    }
}

impl fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered_len", &self.buf.len())
            .field("complete_len", &self.complete_len)
            .field("pending", &self.pending)
            .field("max_frame_len", &self.max_frame_len)
            .finish()
    }
}
