//! Target `frame_decoder` (SPEC.md §10): the streaming [`FrameDecoder`] fed a
//! byte stream cut at arbitrary points, checked against a one-shot reference
//! decoder written from the spec text.
//!
//! Input layout (so seeds can be written by hand):
//! ```text
//! mode (1) ‖ max_frame_len (u16 LE) ‖ n (1) ‖ n chunk lengths (1 each) ‖ stream
//! mode bit 0: decode frames as ClientFrame (next_message) rather than raw bodies
//! mode bit 1: use DEFAULT_MAX_FRAME_LEN instead of the u16
//! ```
//! The stream is pushed in chunks of the listed lengths, cycling through the
//! list (one push of everything when n = 0; a length 0 pushes an empty chunk,
//! then one byte), and every whole frame is taken
//! after each push.
//!
//! Invariants checked:
//! - the frames are exactly the reference's, whatever the cuts;
//! - an error is the reference's error, raised by the push that holds the
//!   byte revealing it (never earlier, never later), and a failed push leaves
//!   `buffered_len` unchanged;
//! - after draining, at most `max_frame_len + 9` bytes stay buffered;
//! - `finish` reports `Truncated` with exactly the bytes of the partial frame.

use microbot_protocol::codec::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, FrameError, MAX_PREFIX_LEN};
use microbot_protocol::transport::ClientFrame;
use prost::Message as _;

/// How the reference decoder saw the stream end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Every byte belongs to a whole frame.
    Clean,
    /// The last `buffered` bytes are an incomplete frame.
    Truncated { buffered: usize },
    /// A prefix announced `length` > max; its last byte is at `at`.
    Oversize { length: u64, at: usize },
    /// The byte at `at` makes the prefix invalid.
    InvalidPrefix { at: usize },
}

/// The one-shot reference: frame bodies as ranges of `stream`, and the ending.
fn reference(stream: &[u8], max_frame_len: usize) -> (Vec<std::ops::Range<usize>>, Ending) {
    let mut frames = Vec::new();
    let mut start = 0;
    loop {
        if start == stream.len() {
            return (frames, Ending::Clean);
        }
        let truncated = Ending::Truncated {
            buffered: stream.len() - start,
        };
        // Parse the varint with a wide accumulator, then apply §10.2.
        let mut value: u128 = 0;
        let mut prefix_len = 0;
        loop {
            let Some(&byte) = stream.get(start + prefix_len) else {
                return (frames, truncated);
            };
            value |= u128::from(byte & 0x7f) << (7 * prefix_len);
            prefix_len += 1;
            let at = start + prefix_len - 1;
            if byte & 0x80 == 0 {
                if prefix_len > 1 && byte == 0 {
                    return (frames, Ending::InvalidPrefix { at });
                }
                if value > u128::from(u64::MAX) {
                    return (frames, Ending::InvalidPrefix { at });
                }
                break;
            }
            if prefix_len == MAX_PREFIX_LEN {
                return (frames, Ending::InvalidPrefix { at });
            }
        }
        let length = u64::try_from(value).unwrap_or(u64::MAX);
        let at = start + prefix_len - 1;
        let body_len = match usize::try_from(length) {
            Ok(len) if len <= max_frame_len => len,
            _ => return (frames, Ending::Oversize { length, at }),
        };
        let body_start = start + prefix_len;
        let body_end = body_start.saturating_add(body_len);
        if body_end > stream.len() {
            return (frames, truncated);
        }
        frames.push(body_start..body_end);
        start = body_end;
    }
}

/// The parsed input header.
struct Setup<'a> {
    as_client_frames: bool,
    max_frame_len: usize,
    chunks: &'a [u8],
    stream: &'a [u8],
}

fn parse_input(data: &[u8]) -> Option<Setup<'_>> {
    let (&[mode, max_lo, max_hi, count], rest) = data.split_first_chunk::<4>()?;
    let (chunks, stream) = rest.split_at_checked(usize::from(count))?;
    Some(Setup {
        as_client_frames: mode & 1 == 1,
        max_frame_len: if mode & 2 == 2 {
            DEFAULT_MAX_FRAME_LEN
        } else {
            usize::from(u16::from_le_bytes([max_lo, max_hi]))
        },
        chunks,
        stream,
    })
}

/// The fuzz target; see the module docs for the input layout.
pub fn frame_decoder(data: &[u8]) {
    let Some(setup) = parse_input(data) else {
        return;
    };
    let stream = setup.stream;
    let (expected, ending) = reference(stream, setup.max_frame_len);
    let mut decoder = FrameDecoder::new(setup.max_frame_len);
    let mut taken = 0;
    let mut offset = 0;
    let mut lengths = setup.chunks.iter().cycle();
    while offset < stream.len() {
        let len = match lengths.next() {
            // A zero length pushes an empty chunk (a no-op), then one byte.
            Some(0) => {
                let before = decoder.buffered_len();
                assert!(decoder.push(&[]).is_ok(), "an empty push failed");
                assert_eq!(decoder.buffered_len(), before);
                1
            }
            Some(&len) => usize::from(len),
            None => stream.len(),
        };
        let end = offset.saturating_add(len).min(stream.len());
        let chunk = stream.get(offset..end).unwrap_or_default();
        let before = decoder.buffered_len();
        if let Err(error) = decoder.push(chunk) {
            assert_eq!(decoder.buffered_len(), before, "a failed push kept bytes");
            let revealed_at = match (error, ending) {
                (FrameError::Oversize { length, max }, Ending::Oversize { length: l, at }) => {
                    assert_eq!((length, max), (l, setup.max_frame_len));
                    at
                }
                (FrameError::InvalidLengthPrefix, Ending::InvalidPrefix { at }) => at,
                (error, ending) => panic!("decoder error {error:?}, reference {ending:?}"),
            };
            assert!(
                (offset..end).contains(&revealed_at),
                "error raised by the wrong push"
            );
            assert!(taken <= expected.len());
            return;
        }
        taken += drain(
            &mut decoder,
            stream,
            &expected,
            taken,
            setup.as_client_frames,
        );
        assert!(
            decoder.buffered_len() < setup.max_frame_len + MAX_PREFIX_LEN,
            "decoder holds {} bytes after draining",
            decoder.buffered_len()
        );
        offset = end;
    }
    assert_eq!(taken, expected.len(), "frames missing");
    match (decoder.finish(), ending) {
        (Ok(()), Ending::Clean) => {}
        (Err(FrameError::Truncated { buffered }), Ending::Truncated { buffered: b }) => {
            assert_eq!(buffered, b);
        }
        (result, ending) => panic!("finish gave {result:?}, reference {ending:?}"),
    }
}

/// Takes every whole frame, checks each against the reference, returns how many.
fn drain(
    decoder: &mut FrameDecoder,
    stream: &[u8],
    expected: &[std::ops::Range<usize>],
    already_taken: usize,
    as_client_frames: bool,
) -> usize {
    let mut count = 0;
    loop {
        let index = already_taken + count;
        let want = expected
            .get(index)
            .and_then(|range| stream.get(range.clone()));
        if as_client_frames {
            match decoder.next_message::<ClientFrame>() {
                Ok(None) => return count,
                Ok(Some(message)) => {
                    let reference = want.map(ClientFrame::decode);
                    assert!(
                        matches!(reference, Some(Ok(ref m)) if *m == message),
                        "frame {index} decoded differently"
                    );
                }
                Err(FrameError::Malformed(_)) => {
                    let reference = want.map(ClientFrame::decode);
                    assert!(matches!(reference, Some(Err(_))), "frame {index} refused");
                }
                Err(error) => panic!("next_message failed: {error:?}"),
            }
        } else {
            match decoder.next_frame() {
                Ok(None) => return count,
                Ok(Some(body)) => {
                    assert_eq!(Some(&body[..]), want, "frame {index} differs");
                }
                Err(error) => panic!("next_frame failed: {error:?}"),
            }
        }
        count += 1;
    }
}
