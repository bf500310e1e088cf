//! Kind `framing`: the frame codec (SPEC.md §10) on valid and invalid byte
//! streams, and the encoding of a first `Hello` frame (SPEC.md §12).
//!
//! `decode` input: `max_frame_len`, `stream` (the bytes received, hex), and
//! `as_client_frames` (decode each body as a `ClientFrame`). Output: the frame
//! bodies decoded before the first error, and `error`: "" when the stream
//! ended cleanly, else one of `oversize`, `invalid_length_prefix`,
//! `truncated`, `malformed`. `encode_hello` input: `versions`, `client_agent`,
//! `request_id`; output: the frame bytes.

use bytes::BytesMut;
use microbot_protocol::codec::{FrameDecoder, FrameError, encode_frame};
use microbot_protocol::transport::{ClientFrame, Hello, client_frame};
use prost::Message;
use serde_json::Value;

use crate::hexbytes::{bytes, hex, object, string, uint};
use crate::vector::{Vector, VectorError};

/// What the file says about itself.
pub const DESCRIPTION: &str = "Frame codec: valid streams, oversize, invalid prefixes, truncation, malformed bodies (SPEC.md §10)";

fn error_name(error: &FrameError) -> &'static str {
    match error {
        FrameError::Oversize { .. } => "oversize",
        FrameError::InvalidLengthPrefix => "invalid_length_prefix",
        FrameError::Truncated { .. } => "truncated",
        FrameError::Malformed(_) => "malformed",
        FrameError::EncodeTooLarge { .. } => "encode_too_large",
    }
}

/// Decodes or encodes as the input says.
pub fn compute(input: &Value) -> Result<Value, VectorError> {
    match string(input, "op")? {
        "decode" => {
            let max = usize::try_from(uint(input, "max_frame_len")?)
                .map_err(|_| VectorError::BadField("max_frame_len".into()))?;
            let as_client_frames = input
                .get("as_client_frames")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let stream = bytes(input, "stream")?;
            let mut decoder = FrameDecoder::new(max);
            let mut frames = Vec::new();
            let outcome = (|| {
                decoder.push(&stream)?;
                while let Some(frame) = decoder.next_frame()? {
                    if as_client_frames {
                        ClientFrame::decode(frame.clone()).map_err(FrameError::Malformed)?;
                    }
                    frames.push(hex(&frame));
                }
                decoder.finish()
            })();
            let error = outcome.err().map(|e| error_name(&e)).unwrap_or("");
            Ok(object([
                ("frames", Value::from(frames)),
                ("error", Value::from(error)),
            ]))
        }
        "encode_hello" => {
            let versions = input
                .get("versions")
                .and_then(Value::as_array)
                .ok_or_else(|| VectorError::MissingField("versions".into()))?
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| VectorError::BadField("versions".into()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let frame = ClientFrame {
                request_id: uint(input, "request_id")?,
                request: Some(client_frame::Request::Hello(Hello {
                    versions,
                    client_agent: string(input, "client_agent")?.to_owned(),
                })),
            };
            let mut out = BytesMut::new();
            encode_frame(&frame, &mut out).map_err(|e| VectorError::Failed(e.to_string()))?;
            Ok(object([("frame", hex(&out))]))
        }
        _ => Err(VectorError::BadField("op".into())),
    }
}

/// Valid and invalid streams.
pub fn generate() -> Result<Vec<Vector>, VectorError> {
    let decode = |name: &str, max: u64, stream: &str, as_client_frames: bool| {
        (
            name.to_owned(),
            object([
                ("op", Value::from("decode")),
                ("max_frame_len", Value::from(max)),
                ("stream", Value::from(stream)),
                ("as_client_frames", Value::from(as_client_frames)),
            ]),
        )
    };
    let inputs = vec![
        (
            "encode-hello".to_owned(),
            object([
                ("op", Value::from("encode_hello")),
                ("request_id", Value::from(1)),
                ("versions", Value::from(vec![1])),
                ("client_agent", Value::from("microbot-test/1")),
            ]),
        ),
        decode(
            "two-frames-and-an-empty-one",
            1024,
            "0361626300026869",
            false,
        ),
        decode(
            "client-frame-hello",
            1024,
            "18080112140a0101120f6d6963726f626f742d746573742f31",
            true,
        ),
        decode("length-at-maximum", 4, "0461626364", false),
        decode("oversize-by-one", 4, "056162636465", false),
        decode("oversize-2-pow-63", 1 << 20, "80808080808080808001", false),
        decode("oversize-u64-max", 1 << 20, "ffffffffffffffffff01", false),
        decode(
            "prefix-longer-than-10-bytes",
            1 << 20,
            "8080808080808080808001",
            false,
        ),
        decode("non-canonical-prefix", 1024, "8100", false),
        decode("truncated-body", 1024, "05616263", false),
        decode("truncated-prefix", 1 << 20, "0261628080", false),
        decode("malformed-client-frame", 1024, "03ffffff", true),
    ];
    inputs
        .into_iter()
        .map(|(name, input)| {
            Ok(Vector {
                output: compute(&input)?,
                name,
                input,
            })
        })
        .collect()
}
