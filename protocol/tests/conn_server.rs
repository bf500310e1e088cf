//! The server role of the connection machine, without a runtime: Hello
//! first and once, versions, request validation, bad bytes, framing.

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{FrameError, encode_frame};
use microbot_protocol::conn::{
    Incoming, MAX_CLIENT_AGENT_LEN, ServerConfig, ServerConn, ServerConnError, answer_frame,
    push_frame,
};
use microbot_protocol::transport::{
    ChallengeRequest, ClientFrame, ErrorCode, Hello, Ok as OkResult, Push, client_frame::Request,
    response, server_frame,
};
use prost::Message as _;

const MAX: usize = 1024;

fn frame(request_id: u64, request: Option<Request>) -> ClientFrame {
    ClientFrame {
        request_id,
        request,
    }
}

fn hello(versions: Vec<u32>) -> Option<Request> {
    Some(Request::Hello(Hello {
        versions,
        client_agent: "test".into(),
    }))
}

fn challenge() -> Option<Request> {
    Some(Request::Challenge(ChallengeRequest {}))
}

fn stream(frame: &ClientFrame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).unwrap();
    buf.to_vec()
}

fn open() -> ServerConn {
    let mut conn = ServerConn::new(ServerConfig::new(MAX));
    conn.accept(frame(1, hello(vec![1]))).unwrap();
    conn
}

#[test]
fn hello_first_chooses_the_highest_common_version() {
    let mut conn = ServerConn::new(ServerConfig {
        supported_versions: vec![1, 2],
        max_frame_len: MAX,
        max_client_agent_len: MAX_CLIENT_AGENT_LEN,
    });
    assert!(conn.awaiting_hello());
    conn.handle_stream_bytes(&stream(&frame(5, hello(vec![1, 2, 3]))))
        .unwrap();
    match conn.poll_request().unwrap() {
        Some(Incoming::Hello {
            request_id,
            version,
            ..
        }) => assert_eq!((request_id, version), (5, 2)),
        other => panic!("{other:?}"),
    }
    assert!(!conn.awaiting_hello());
    assert_eq!(conn.version(), Some(2));
    assert!(conn.poll_request().unwrap().is_none());
}

#[test]
fn an_unknown_version_is_refused_with_the_supported_ones() {
    let mut conn = ServerConn::new(ServerConfig::new(MAX));
    let error = conn.accept(frame(1, hello(vec![99]))).unwrap_err();
    assert_eq!(error.code(), ErrorCode::UnsupportedVersion);
    let wire = error.to_wire();
    assert_eq!(
        wire.message,
        "no common protocol version; this server speaks [1]"
    );
    assert_eq!(wire.supported_versions, vec![1]);
    assert!(conn.awaiting_hello(), "state unchanged");
}

#[test]
fn a_long_client_agent_is_an_invalid_argument() {
    let mut conn = ServerConn::new(ServerConfig::new(MAX));
    let long = Some(Request::Hello(Hello {
        versions: vec![1],
        client_agent: "a".repeat(MAX_CLIENT_AGENT_LEN + 1),
    }));
    let error = conn.accept(frame(1, long)).unwrap_err();
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    assert_eq!(
        error.to_string(),
        "Hello.client_agent must be at most 128 bytes"
    );
}

#[test]
fn the_first_frame_must_be_hello_and_hello_comes_once() {
    let mut conn = ServerConn::new(ServerConfig::new(MAX));
    for first in [challenge(), None] {
        let error = conn.accept(frame(1, first)).unwrap_err();
        assert!(matches!(error, ServerConnError::HelloExpected));
        assert_eq!(error.code(), ErrorCode::ProtocolViolation);
        assert_eq!(error.to_string(), "the first frame must be Hello");
    }
    let mut conn = open();
    let error = conn.accept(frame(2, hello(vec![1]))).unwrap_err();
    assert!(matches!(error, ServerConnError::HelloTwice));
    assert_eq!(error.to_wire().code, ErrorCode::ProtocolViolation);
    assert_eq!(error.to_string(), "Hello sent twice");
    assert_eq!(conn.version(), Some(1));
}

#[test]
fn requests_after_hello_are_passed_on_with_their_id() {
    let mut conn = open();
    assert_eq!(
        conn.accept(frame(7, challenge())).unwrap(),
        Incoming::Request {
            request_id: 7,
            request: Request::Challenge(ChallengeRequest {})
        }
    );
    assert_eq!(
        conn.accept(frame(8, None)).unwrap(),
        Incoming::Unknown { request_id: 8 }
    );
}

#[test]
fn bad_bytes_are_typed_errors_with_their_close_codes() {
    let mut conn = open();
    // Oversize prefix: nothing kept.
    let error = conn.handle_stream_bytes(&[0x80, 0x80, 0x04]).unwrap_err();
    assert!(matches!(
        error,
        ServerConnError::Frame(FrameError::Oversize { .. })
    ));
    assert_eq!(error.code(), ErrorCode::FrameTooLarge);
    assert_eq!(conn.buffered_len(), 0);
    let error = conn.handle_stream_bytes(&[0xff; 11]).unwrap_err();
    assert_eq!(error.code(), ErrorCode::MalformedFrame);
    assert_eq!(conn.buffered_len(), 0);
    // Malformed body: consumed, the next frame still reads.
    conn.handle_stream_bytes(&[0x02, 0x12, 0x05]).unwrap();
    conn.handle_stream_bytes(&stream(&frame(3, challenge())))
        .unwrap();
    let error = conn.poll_request().unwrap_err();
    assert!(matches!(error, ServerConnError::Malformed(_)));
    assert_eq!(error.code(), ErrorCode::MalformedFrame);
    assert!(matches!(
        conn.poll_request().unwrap(),
        Some(Incoming::Request { request_id: 3, .. })
    ));
    // A message body over the limit.
    let error = conn.accept_body(Bytes::from(vec![0; MAX + 1])).unwrap_err();
    assert_eq!(error.code(), ErrorCode::FrameTooLarge);
    // A cut-short frame at the end of the stream.
    conn.handle_stream_bytes(&[0x05, 0x08]).unwrap();
    assert_eq!(conn.buffered_len(), 2);
    assert!(matches!(
        conn.finish(),
        Err(ServerConnError::Frame(FrameError::Truncated {
            buffered: 2
        }))
    ));
}

#[test]
fn answers_and_pushes_are_framed() {
    let answer = answer_frame(9, response::Result::Ok(OkResult {}));
    match answer.kind {
        Some(server_frame::Kind::Response(r)) => {
            assert_eq!(r.request_id, 9);
            assert_eq!(r.result, Some(response::Result::Ok(OkResult {})));
        }
        other => panic!("{other:?}"),
    }
    let push = push_frame(Push::default());
    assert!(matches!(push.kind, Some(server_frame::Kind::Push(_))));
    let closing = ServerConnError::HelloTwice.to_wire().closing_frame();
    let decoded =
        microbot_protocol::transport::ServerFrame::decode(closing.encode_to_vec().as_slice())
            .unwrap();
    match decoded.kind {
        Some(server_frame::Kind::Closing(e)) => {
            assert_eq!(e.code, ErrorCode::ProtocolViolation as i32);
            assert_eq!(e.message, "Hello sent twice");
        }
        other => panic!("{other:?}"),
    }
}
