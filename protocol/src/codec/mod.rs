//! The frame codec: SPEC.md §10 (framing).
//!
//! A frame is a canonical protobuf varint giving the body length, then the
//! body: one encoded protobuf message. Encoding refuses messages over the
//! limit; [`FrameDecoder`] splits a byte stream into frames, whatever the
//! points at which the stream was cut, and refuses oversize frames from their
//! prefix alone.
//!
//! Not owned here: which message type a frame carries (the transport layer
//! knows it), and any I/O — this module only sees byte slices.

mod decoder;
mod encode;
mod error;
mod prefix;

pub use decoder::FrameDecoder;
pub use encode::{encode_frame, encode_frame_to_vec, encode_frame_with_limit};
pub use error::FrameError;
pub use prefix::MAX_PREFIX_LEN;

/// The default maximum frame body length: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024 * 1024;
