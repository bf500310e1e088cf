//! Frame codec tests (SPEC.md §10), through the public API only.

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{
    DEFAULT_MAX_FRAME_LEN, FrameDecoder, FrameError, MAX_PREFIX_LEN, encode_frame,
    encode_frame_to_vec, encode_frame_with_limit,
};
use proptest::prelude::*;

/// A stand-in message: one bytes field and one varint field.
#[derive(Clone, PartialEq, prost::Message)]
struct Probe {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(uint64, tag = "2")]
    number: u64,
}

fn probe(payload: &[u8], number: u64) -> Probe {
    Probe {
        payload: payload.to_vec(),
        number,
    }
}

fn sample_messages() -> Vec<Probe> {
    vec![
        probe(b"hello", 1),
        Probe::default(),
        probe(&[0xAB; 200], u64::MAX),
        probe(b"", 7),
        probe(&[1, 2, 3], 0),
    ]
}

fn encode_all(messages: &[Probe]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    for message in messages {
        encode_frame(message, &mut dst).unwrap();
    }
    dst.to_vec()
}

/// Takes every whole message out of the decoder.
fn drain(decoder: &mut FrameDecoder, out: &mut Vec<Probe>) {
    while let Some(message) = decoder.next_message::<Probe>().unwrap() {
        out.push(message);
    }
}

/// Returns the offsets at which each frame of `stream` ends.
fn frame_ends(messages: &[Probe]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut total = 0;
    for message in messages {
        total += encode_frame_to_vec(message).unwrap().len();
        ends.push(total);
    }
    ends
}

#[test]
fn round_trip_of_several_frames() {
    let messages = sample_messages();
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    decoder.push(&encode_all(&messages)).unwrap();
    let mut out = Vec::new();
    drain(&mut decoder, &mut out);
    assert_eq!(out, messages);
    assert_eq!(decoder.buffered_len(), 0);
    decoder.finish().unwrap();
}

#[test]
fn encode_frame_to_vec_equals_encode_frame() {
    for message in sample_messages() {
        let mut dst = BytesMut::from(&b"xyz"[..]);
        encode_frame(&message, &mut dst).unwrap();
        assert_eq!(&dst[..3], b"xyz");
        assert_eq!(dst[3..].to_vec(), encode_frame_to_vec(&message).unwrap());
    }
}

#[test]
fn frame_bytes_are_varint_length_then_body() {
    // payload field: tag 0x0a, length 3, "abc"; number field: tag 0x10, 300 = ac 02.
    let frame = encode_frame_to_vec(&probe(b"abc", 300)).unwrap();
    assert_eq!(
        frame,
        [0x08, 0x0a, 0x03, b'a', b'b', b'c', 0x10, 0xac, 0x02]
    );
    // A 300-byte body has the two-byte prefix ac 02.
    let big = probe(&[0u8; 297], 0);
    let frame = encode_frame_to_vec(&big).unwrap();
    assert_eq!(&frame[..2], &[0xac, 0x02]);
    assert_eq!(frame.len(), 302);
}

#[test]
fn zero_length_frame_is_an_empty_message() {
    let frame = encode_frame_to_vec(&Probe::default()).unwrap();
    assert_eq!(frame, [0x00]);
    let mut decoder = FrameDecoder::new(16);
    decoder.push(&[0x00, 0x00]).unwrap();
    assert_eq!(decoder.next_frame().unwrap(), Some(Bytes::new()));
    assert_eq!(
        decoder.next_message::<Probe>().unwrap(),
        Some(Probe::default())
    );
    assert_eq!(decoder.next_frame().unwrap(), None);
    decoder.finish().unwrap();
}

#[test]
fn every_split_point_gives_the_same_frames() {
    let messages = sample_messages();
    let stream = encode_all(&messages);
    for split in 0..=stream.len() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        let mut out = Vec::new();
        decoder.push(&stream[..split]).unwrap();
        drain(&mut decoder, &mut out);
        decoder.push(&stream[split..]).unwrap();
        drain(&mut decoder, &mut out);
        assert_eq!(out, messages, "split at {split}");
        decoder.finish().unwrap();
    }
}

#[test]
fn every_pair_of_split_points_gives_the_same_frames() {
    let messages = vec![probe(b"ab", 300), Probe::default(), probe(&[9; 130], 1)];
    let stream = encode_all(&messages);
    for first in 0..=stream.len() {
        for second in first..=stream.len() {
            let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
            let mut out = Vec::new();
            for chunk in [&stream[..first], &stream[first..second], &stream[second..]] {
                decoder.push(chunk).unwrap();
                drain(&mut decoder, &mut out);
            }
            assert_eq!(out, messages, "splits at {first} and {second}");
        }
    }
}

#[test]
fn byte_at_a_time_yields_each_frame_as_soon_as_it_is_whole() {
    let messages = sample_messages();
    let stream = encode_all(&messages);
    let ends = frame_ends(&messages);
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let mut out = Vec::new();
    for (index, byte) in stream.iter().enumerate() {
        decoder.push(&[*byte]).unwrap();
        drain(&mut decoder, &mut out);
        let whole = ends.iter().filter(|&&end| end <= index + 1).count();
        assert_eq!(out.len(), whole, "after byte {index}");
    }
    assert_eq!(out, messages);
}

#[test]
fn truncation_at_every_point_is_reported_by_finish() {
    let messages = sample_messages();
    let stream = encode_all(&messages);
    let ends = frame_ends(&messages);
    for cut in 0..=stream.len() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        decoder.push(&stream[..cut]).unwrap();
        let last_end = ends
            .iter()
            .copied()
            .filter(|&end| end <= cut)
            .max()
            .unwrap_or(0);
        match decoder.finish() {
            Ok(()) => assert_eq!(cut, last_end, "cut {cut} is inside a frame"),
            Err(FrameError::Truncated { buffered }) => {
                assert_eq!(buffered, cut - last_end, "cut {cut}");
                assert!(buffered > 0);
            }
            Err(other) => panic!("cut {cut}: unexpected {other:?}"),
        }
        // Whole frames are still readable; the partial one is not returned.
        let mut out = Vec::new();
        drain(&mut decoder, &mut out);
        assert_eq!(out.len(), ends.iter().filter(|&&end| end <= cut).count());
    }
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(value, &mut out);
    // Cross-check against a hand-written LEB128 encoder.
    let mut manual = Vec::new();
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            manual.push(low);
            break;
        }
        manual.push(low | 0x80);
    }
    assert_eq!(out, manual);
    out
}

fn assert_oversize(prefix: &[u8], expected_length: u64, max: usize) {
    // All at once, with some body bytes behind it.
    let mut decoder = FrameDecoder::new(max);
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(&[0u8; 32]);
    match decoder.push(&bytes) {
        Err(FrameError::Oversize {
            length,
            max: reported,
        }) => {
            assert_eq!(length, expected_length);
            assert_eq!(reported, max);
        }
        other => panic!("expected Oversize, got {other:?}"),
    }
    assert_eq!(decoder.buffered_len(), 0, "nothing kept after an error");
    // Byte at a time: refused exactly when the prefix's last byte arrives.
    let mut decoder = FrameDecoder::new(max);
    let (last, head) = prefix.split_last().unwrap();
    for byte in head {
        decoder.push(&[*byte]).unwrap();
    }
    assert_eq!(decoder.buffered_len(), head.len());
    assert!(matches!(
        decoder.push(&[*last]),
        Err(FrameError::Oversize { length, .. }) if length == expected_length
    ));
    assert_eq!(
        decoder.buffered_len(),
        head.len(),
        "state unchanged by the error"
    );
}

#[test]
fn oversize_is_refused_from_the_prefix_alone() {
    let max = DEFAULT_MAX_FRAME_LEN;
    assert_oversize(&varint(max as u64 + 1), max as u64 + 1, max);
    assert_oversize(&varint(1 << 63), 1 << 63, max);
    assert_oversize(&varint(u64::MAX), u64::MAX, max);
    assert_eq!(varint(u64::MAX).len(), MAX_PREFIX_LEN);
    assert_eq!(
        varint(1 << 63),
        [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]
    );
    // The examples of SPEC.md §10.2.
    assert_eq!(varint(0), [0x00]);
    assert_eq!(varint(31), [0x1f]);
    assert_eq!(varint(300), [0xac, 0x02]);
    assert_eq!(varint(1 << 20), [0x80, 0x80, 0x40]);
    assert_eq!(
        varint(u64::MAX),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
    );
    assert_oversize(&varint(11), 11, 10);
    assert_oversize(&[0x01], 1, 0);
}

#[test]
fn exactly_max_is_accepted() {
    let message = probe(&[5; 100], 0);
    let len = encode_frame_to_vec(&message).unwrap().len() - 1;
    let mut decoder = FrameDecoder::new(len);
    decoder
        .push(&encode_frame_to_vec(&message).unwrap())
        .unwrap();
    assert_eq!(
        decoder.next_message::<Probe>().unwrap(),
        Some(message.clone())
    );
    let mut decoder = FrameDecoder::new(len - 1);
    assert!(matches!(
        decoder.push(&encode_frame_to_vec(&message).unwrap()),
        Err(FrameError::Oversize { .. })
    ));
}

#[test]
fn huge_limits_do_not_overflow() {
    let mut decoder = FrameDecoder::new(usize::MAX);
    assert_eq!(decoder.max_frame_len(), usize::MAX - MAX_PREFIX_LEN);
    assert!(matches!(
        decoder.push(&varint(u64::MAX)),
        Err(FrameError::Oversize {
            length: u64::MAX,
            ..
        })
    ));
    decoder.finish().unwrap();
    // The largest accepted length: the prefix is taken, the frame is unfinished.
    decoder
        .push(&varint((usize::MAX - MAX_PREFIX_LEN) as u64))
        .unwrap();
    assert_eq!(decoder.next_frame().unwrap(), None);
    assert!(matches!(
        decoder.finish(),
        Err(FrameError::Truncated { buffered: 10 })
    ));
}

fn assert_invalid_prefix(bytes: &[u8]) {
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    assert!(
        matches!(decoder.push(bytes), Err(FrameError::InvalidLengthPrefix)),
        "{bytes:02x?} should be refused"
    );
    assert_eq!(decoder.buffered_len(), 0);
    // Byte at a time: refused no later than the end of the bytes.
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
    let refused = bytes.iter().any(|byte| decoder.push(&[*byte]).is_err());
    assert!(refused, "{bytes:02x?} should be refused byte by byte");
}

#[test]
fn eleven_byte_varints_are_refused() {
    assert_invalid_prefix(&[
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
    ]);
    assert_invalid_prefix(&[0xff; 11]);
    // Refused at the tenth byte already: it cannot be the last one.
    assert_invalid_prefix(&[0x80; 10]);
}

#[test]
fn varints_over_64_bits_are_refused() {
    let mut bytes = vec![0xff; 9];
    bytes.push(0x02);
    assert_invalid_prefix(&bytes);
    bytes[9] = 0x7f;
    assert_invalid_prefix(&bytes);
}

#[test]
fn non_canonical_varints_are_refused() {
    assert_invalid_prefix(&[0x80, 0x00]);
    assert_invalid_prefix(&[0x85, 0x80, 0x00]);
    let mut zero_padded = vec![0x80; 9];
    zero_padded.push(0x00);
    assert_invalid_prefix(&zero_padded);
}

#[test]
fn an_error_keeps_none_of_the_pushed_bytes() {
    let good = encode_frame_to_vec(&probe(b"ok", 1)).unwrap();
    let mut decoder = FrameDecoder::new(64);
    decoder.push(&good[..2]).unwrap();
    let mut chunk = good[2..].to_vec();
    chunk.extend_from_slice(&good);
    chunk.extend_from_slice(&varint(65));
    assert!(matches!(
        decoder.push(&chunk),
        Err(FrameError::Oversize {
            length: 65,
            max: 64
        })
    ));
    assert_eq!(decoder.buffered_len(), 2);
    assert_eq!(decoder.next_frame().unwrap(), None);
    // The same bytes without the bad prefix are accepted.
    decoder.push(&chunk[..chunk.len() - 1]).unwrap();
    let mut out = Vec::new();
    drain(&mut decoder, &mut out);
    assert_eq!(out, vec![probe(b"ok", 1), probe(b"ok", 1)]);
}

#[test]
fn malformed_body_is_reported_and_the_stream_goes_on() {
    let mut decoder = FrameDecoder::new(64);
    // 0x0a = field 1, length-delimited, then a length of 5 with only 1 byte.
    decoder.push(&[0x03, 0x0a, 0x05, 0x41]).unwrap();
    decoder
        .push(&encode_frame_to_vec(&probe(b"next", 2)).unwrap())
        .unwrap();
    assert!(matches!(
        decoder.next_message::<Probe>(),
        Err(FrameError::Malformed(_))
    ));
    assert_eq!(
        decoder.next_message::<Probe>().unwrap(),
        Some(probe(b"next", 2))
    );
    assert_eq!(decoder.next_message::<Probe>().unwrap(), None);
}

#[test]
fn encoding_over_the_limit_is_refused_and_writes_nothing() {
    let message = probe(&vec![0; DEFAULT_MAX_FRAME_LEN], 0);
    let mut dst = BytesMut::from(&b"prior"[..]);
    match encode_frame(&message, &mut dst) {
        Err(FrameError::EncodeTooLarge { length, max }) => {
            // tag (1 byte) + 3-byte length varint + the bytes.
            assert_eq!(length, DEFAULT_MAX_FRAME_LEN + 4);
            assert_eq!(max, DEFAULT_MAX_FRAME_LEN);
        }
        other => panic!("expected EncodeTooLarge, got {other:?}"),
    }
    assert_eq!(&dst[..], b"prior");
    assert!(matches!(
        encode_frame_to_vec(&message),
        Err(FrameError::EncodeTooLarge { .. })
    ));

    let small = probe(b"12345", 0); // 7 bytes encoded
    encode_frame_with_limit(&small, &mut dst, 7).unwrap();
    assert!(matches!(
        encode_frame_with_limit(&small, &mut dst, 6),
        Err(FrameError::EncodeTooLarge { length: 7, max: 6 })
    ));
    assert_eq!(dst.len(), 5 + 8);
}

#[test]
fn a_million_tiny_frames_decode_with_a_bounded_buffer() {
    let frame = encode_frame_to_vec(&probe(b"", 1)).unwrap();
    assert_eq!(frame, [0x02, 0x10, 0x01]);
    const FRAMES: usize = 1_000_000;
    const PER_CHUNK: usize = 1000;
    // A chunk that ends in the middle of a frame, so frames straddle chunks.
    let chunk: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * PER_CHUNK + 1)
        .collect();
    let mut decoder = FrameDecoder::new(16);
    let mut decoded = 0usize;
    let mut pushed = 0usize;
    let mut max_after_drain = 0usize;
    let total = frame.len() * FRAMES;
    let stream_bytes = frame.iter().copied().cycle();
    let mut stream_bytes = stream_bytes.take(total);
    let mut buf = Vec::with_capacity(chunk.len());
    loop {
        buf.clear();
        buf.extend(stream_bytes.by_ref().take(chunk.len()));
        if buf.is_empty() {
            break;
        }
        pushed += buf.len();
        decoder.push(&buf).unwrap();
        while let Some(body) = decoder.next_frame().unwrap() {
            assert_eq!(&body[..], &[0x10, 0x01]);
            decoded += 1;
        }
        max_after_drain = max_after_drain.max(decoder.buffered_len());
    }
    assert_eq!(pushed, total);
    assert_eq!(decoded, FRAMES);
    assert!(
        max_after_drain < frame.len(),
        "buffer held {max_after_drain} bytes"
    );
    decoder.finish().unwrap();
}

#[test]
fn a_partial_frame_never_buffers_more_than_max_plus_prefix() {
    let max = 300;
    let message = probe(&[7; 296], 0); // 299-byte body, 2-byte prefix
    let frame = encode_frame_to_vec(&message).unwrap();
    let mut decoder = FrameDecoder::new(max);
    for byte in &frame[..frame.len() - 1] {
        decoder.push(&[*byte]).unwrap();
        assert!(decoder.buffered_len() <= max + MAX_PREFIX_LEN);
        assert_eq!(decoder.next_frame().unwrap(), None);
    }
    decoder.push(&frame[frame.len() - 1..]).unwrap();
    assert_eq!(decoder.next_message::<Probe>().unwrap(), Some(message));
}

fn arb_probe() -> impl Strategy<Value = Probe> {
    (proptest::collection::vec(any::<u8>(), 0..300), any::<u64>())
        .prop_map(|(payload, number)| Probe { payload, number })
}

proptest! {
    #[test]
    fn random_frames_with_random_splits_round_trip(
        messages in proptest::collection::vec(arb_probe(), 0..12),
        mut cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream = encode_all(&messages);
        let mut points: Vec<usize> = cuts.drain(..).map(|cut| cut.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        let mut out = Vec::new();
        for window in points.windows(2) {
            decoder.push(&stream[window[0]..window[1]]).unwrap();
            drain(&mut decoder, &mut out);
        }
        prop_assert_eq!(out, messages);
        prop_assert_eq!(decoder.buffered_len(), 0);
        prop_assert!(decoder.finish().is_ok());
    }

    #[test]
    fn random_garbage_never_panics(
        garbage in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk_len in 1usize..64,
        max in 0usize..600,
    ) {
        let mut decoder = FrameDecoder::new(max);
        for chunk in garbage.chunks(chunk_len) {
            let before = decoder.buffered_len();
            if decoder.push(chunk).is_err() {
                prop_assert_eq!(decoder.buffered_len(), before);
                break;
            }
            loop {
                match decoder.next_message::<Probe>() {
                    Ok(Some(_)) | Err(FrameError::Malformed(_)) => {}
                    Ok(None) => break,
                    Err(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
                }
            }
            // The unfinished frame stays within the bound.
            prop_assert!(decoder.buffered_len() <= max + MAX_PREFIX_LEN);
        }
        let _ = decoder.finish();
    }
}
