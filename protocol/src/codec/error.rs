//! The one error type of the frame codec (SPEC.md §10.4).

/// Why a frame could not be encoded or decoded.
///
/// Every variant except [`FrameError::Malformed`] means the byte stream can no
/// longer be split into frames: the caller should close the stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces a body longer than the maximum frame length.
    /// Decided from the prefix alone, before any byte of the body is buffered.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    Oversize {
        /// The body length the prefix announced.
        length: u64,
        /// The maximum body length this decoder accepts.
        max: usize,
    },
    /// The length prefix is not a canonical varint of at most 10 bytes whose
    /// value fits in 64 bits.
    #[error("invalid frame length prefix (longer than 10 bytes, over 64 bits, or not canonical)")]
    InvalidLengthPrefix,
    /// The stream ended in the middle of a frame (prefix or body).
    #[error("stream ended in the middle of a frame ({buffered} bytes of it were received)")]
    Truncated {
        /// Bytes of the incomplete frame (prefix included) that were received.
        buffered: usize,
    },
    /// The frame body is not a valid encoding of the expected message type.
    /// The frame has been consumed; the framing of the stream is intact.
    #[error("frame body is not a valid message: {0}")]
    Malformed(#[source] prost::DecodeError),
    /// The message to send is longer than the maximum frame length (or than
    /// the space left in the destination buffer). Nothing was written.
    #[error("message of {length} bytes exceeds the maximum frame length of {max} bytes")]
    EncodeTooLarge {
        /// The encoded length of the message.
        length: usize,
        /// The maximum body length allowed.
        max: usize,
    },
}
