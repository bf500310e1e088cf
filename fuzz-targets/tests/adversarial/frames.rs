//! Framing (SPEC.md §10): absurd lengths and floods of tiny frames.

use microbot_protocol::codec::{DEFAULT_MAX_FRAME_LEN, FrameDecoder, FrameError, MAX_PREFIX_LEN};
use microbot_protocol::transport::ClientFrame;

/// The canonical varint of `value`.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn a_frame_length_of_2_pow_63_is_refused_from_its_prefix_alone() {
    for length in [1u64 << 63, u64::MAX, DEFAULT_MAX_FRAME_LEN as u64 + 1] {
        let prefix = varint(length);
        assert!(prefix.len() <= MAX_PREFIX_LEN);
        // Alone, byte by byte, and followed by body bytes in the same push.
        let mut decoder = FrameDecoder::default();
        let (last, head) = prefix.split_last().unwrap();
        for byte in head {
            decoder.push(&[*byte]).unwrap();
        }
        let before = decoder.buffered_len();
        let error = decoder.push(&[*last]).unwrap_err();
        assert!(
            matches!(error, FrameError::Oversize { length: l, max } if l == length && max == DEFAULT_MAX_FRAME_LEN)
        );
        assert_eq!(decoder.buffered_len(), before);

        let mut with_body = prefix.clone();
        with_body.extend_from_slice(&[0xAB; 4096]);
        let mut decoder = FrameDecoder::default();
        assert!(matches!(
            decoder.push(&with_body),
            Err(FrameError::Oversize { .. })
        ));
        assert_eq!(
            decoder.buffered_len(),
            0,
            "bytes of a refused frame were kept"
        );
    }
}

#[test]
fn an_unlimited_decoder_buffers_only_bytes_that_arrived() {
    // Even with the limit at its maximum, a 2^63 prefix reserves nothing:
    // the buffer grows with received bytes only.
    let mut decoder = FrameDecoder::new(usize::MAX);
    decoder.push(&varint(1 << 63)).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    for _ in 0..4 {
        decoder.push(&chunk).unwrap();
    }
    assert_eq!(decoder.buffered_len(), 10 + 4 * chunk.len());
    assert!(decoder.next_frame().unwrap().is_none());
    assert!(matches!(
        decoder.finish(),
        Err(FrameError::Truncated { .. })
    ));
}

#[test]
fn a_million_tiny_frames_keep_the_buffer_bounded() {
    const FRAMES: usize = 1_000_000;
    const CHUNK: usize = 64 * 1024;
    // Alternate empty frames and one-byte frames: `00` and `01 2a`.
    let mut stream = Vec::with_capacity(FRAMES * 3 / 2);
    for i in 0..FRAMES {
        if i % 2 == 0 {
            stream.push(0x00);
        } else {
            stream.extend_from_slice(&[0x01, 0x2a]);
        }
    }
    let mut decoder = FrameDecoder::default();
    let mut frames = 0;
    let mut peak = 0;
    for chunk in stream.chunks(CHUNK) {
        decoder.push(chunk).unwrap();
        peak = peak.max(decoder.buffered_len());
        while let Some(body) = decoder.next_frame().unwrap() {
            assert!(body.len() <= 1);
            frames += 1;
        }
        assert!(
            decoder.buffered_len() < 2,
            "an incomplete frame is at most its prefix"
        );
    }
    assert_eq!(frames, FRAMES);
    assert!(peak <= CHUNK + 1, "peak {peak}");
    decoder.finish().unwrap();
}

#[test]
fn a_million_empty_client_frames_decode_without_growth() {
    // An empty body is a valid ClientFrame with no request: the transport
    // answers each with an error, framing itself stays bounded.
    let stream = vec![0u8; 1_000_000];
    let mut decoder = FrameDecoder::default();
    let mut frames = 0;
    for chunk in stream.chunks(4096) {
        decoder.push(chunk).unwrap();
        while let Some(frame) = decoder.next_message::<ClientFrame>().unwrap() {
            assert!(frame.request.is_none());
            frames += 1;
        }
        assert_eq!(decoder.buffered_len(), 0);
    }
    assert_eq!(frames, stream.len());
}
