//! Frame encoding (SPEC.md §10.2): canonical varint length, then the message.

use bytes::BytesMut;

use super::{DEFAULT_MAX_FRAME_LEN, FrameError};

/// Appends `message` to `dst` as one frame, refusing messages longer than
/// [`DEFAULT_MAX_FRAME_LEN`].
///
/// # Errors
/// [`FrameError::EncodeTooLarge`]; `dst` is then unchanged.
pub fn encode_frame<M: prost::Message>(message: &M, dst: &mut BytesMut) -> Result<(), FrameError> {
    encode_frame_with_limit(message, dst, DEFAULT_MAX_FRAME_LEN)
}

/// Appends `message` to `dst` as one frame, refusing messages whose encoding
/// is longer than `max_frame_len` bytes.
///
/// # Errors
/// [`FrameError::EncodeTooLarge`]; `dst` is then unchanged.
pub fn encode_frame_with_limit<M: prost::Message>(
    message: &M,
    dst: &mut BytesMut,
    max_frame_len: usize,
) -> Result<(), FrameError> {
    let header = FrameHeader::for_message(message, max_frame_len)?;
    let start = dst.len();
    dst.reserve(header.frame_len);
    prost::encoding::encode_varint(header.body_len_u64, dst);
    if message.encode(dst).is_err() {
        // Only possible if `dst` cannot grow to the frame's size.
        dst.truncate(start);
        return Err(header.too_large_for(usize::MAX - start));
    }
    Ok(())
}

/// Encodes `message` as one frame into a new vector, refusing messages longer
/// than [`DEFAULT_MAX_FRAME_LEN`].
///
/// # Errors
/// [`FrameError::EncodeTooLarge`].
pub fn encode_frame_to_vec<M: prost::Message>(message: &M) -> Result<Vec<u8>, FrameError> {
    let header = FrameHeader::for_message(message, DEFAULT_MAX_FRAME_LEN)?;
    let mut dst = Vec::with_capacity(header.frame_len);
    prost::encoding::encode_varint(header.body_len_u64, &mut dst);
    message
        .encode(&mut dst)
        .map_err(|_| header.too_large_for(isize::MAX.unsigned_abs()))?;
    Ok(dst)
}

/// The sizes of a frame about to be written, checked against the limit.
struct FrameHeader {
    body_len: usize,
    body_len_u64: u64,
    frame_len: usize,
}

impl FrameHeader {
    fn for_message<M: prost::Message>(
        message: &M,
        max_frame_len: usize,
    ) -> Result<Self, FrameError> {
        let body_len = message.encoded_len();
        let too_large = FrameError::EncodeTooLarge {
            length: body_len,
            max: max_frame_len,
        };
        if body_len > max_frame_len {
            return Err(too_large);
        }
        let body_len_u64 = u64::try_from(body_len).map_err(|_| too_large)?;
        let frame_len = prost::encoding::encoded_len_varint(body_len_u64).saturating_add(body_len);
        Ok(Self {
            body_len,
            body_len_u64,
            frame_len,
        })
    }

    fn too_large_for(&self, space: usize) -> FrameError {
        FrameError::EncodeTooLarge {
            length: self.body_len,
            max: space,
        }
    }
}
