//! The client role of the connection machine, without a runtime: Hello,
//! versions, answers matched by id, pushes, error frames, bad bytes.

use bytes::{Bytes, BytesMut};
use microbot_protocol::codec::{FrameError, encode_frame};
use microbot_protocol::conn::{AnswerError, ClientConn, ClientConnError, ClientEvent, WireError};
use microbot_protocol::transport::{
    ChallengeRequest, ClientFrame, Error, ErrorCode, Hello, HelloResponse, Ok as OkResult,
    PrekeyLowStock, Push, Response, ServerFrame, client_frame::Request, push, response,
    server_frame,
};
use prost::Message as _;

const MAX: usize = 1024;

fn hello(versions: Vec<u32>) -> Request {
    Request::Hello(Hello {
        versions,
        client_agent: "test".into(),
    })
}

fn stream(frame: &ServerFrame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).unwrap();
    buf.to_vec()
}

fn answer(request_id: u64, result: Option<response::Result>) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Response(Response {
            request_id,
            result,
        })),
    }
}

fn hello_answer(request_id: u64, version: u32) -> ServerFrame {
    answer(
        request_id,
        Some(response::Result::Hello(HelloResponse {
            version,
            challenge: Bytes::from_static(&[7; 32]),
            ..HelloResponse::default()
        })),
    )
}

fn closing(code: ErrorCode, message: &str) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Closing(Error {
            code: code as i32,
            message: message.into(),
            supported_versions: vec![1],
            ..Error::default()
        })),
    }
}

fn ok() -> Option<response::Result> {
    Some(response::Result::Ok(OkResult {}))
}

/// A machine whose Hello (id 1) was answered with version 1.
fn open() -> ClientConn {
    let mut conn = ClientConn::new(MAX);
    assert_eq!(conn.request(hello(vec![1])).unwrap(), 1);
    conn.poll_transmit().unwrap();
    conn.handle_stream_bytes(&stream(&hello_answer(1, 1)))
        .unwrap();
    assert!(matches!(
        conn.poll_event(),
        Ok(Some(ClientEvent::Hello { .. }))
    ));
    conn
}

#[test]
fn hello_is_sent_as_a_frame_and_its_answer_opens_the_connection() {
    let mut conn = ClientConn::new(MAX);
    let id = conn.request(hello(vec![1])).unwrap();
    let transmit = conn.poll_transmit().unwrap();
    assert_eq!(transmit.request_id, id);
    let sent = ClientFrame::decode(transmit.body()).unwrap();
    assert_eq!(sent.request_id, id);
    assert!(matches!(sent.request, Some(Request::Hello(_))));
    assert_eq!(
        transmit.stream_bytes().len(),
        transmit.body().len() + 1,
        "a one-byte length prefix"
    );
    assert!(conn.poll_transmit().is_none());
    assert!(conn.is_pending(id));
    assert_eq!(conn.version(), None);

    // Split anywhere: nothing comes out before the frame is whole.
    let bytes = stream(&hello_answer(id, 1));
    let (a, b) = bytes.split_at(3);
    conn.handle_stream_bytes(a).unwrap();
    assert!(conn.poll_event().unwrap().is_none());
    conn.handle_stream_bytes(b).unwrap();
    match conn.poll_event().unwrap() {
        Some(ClientEvent::Hello {
            request_id,
            response,
        }) => {
            assert_eq!(request_id, id);
            assert_eq!(response.challenge.len(), 32);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.version(), Some(1));
    assert_eq!(conn.pending_len(), 0);
}

#[test]
fn a_refused_version_is_a_typed_error_and_ends_the_connection() {
    let mut conn = ClientConn::new(MAX);
    conn.request(hello(vec![99])).unwrap();
    conn.handle_stream_bytes(&stream(&closing(
        ErrorCode::UnsupportedVersion,
        "no common protocol version; this server speaks [1]",
    )))
    .unwrap();
    match conn.poll_event() {
        Err(ClientConnError::UnsupportedVersion(e)) => {
            assert_eq!(e.code, ErrorCode::UnsupportedVersion);
            assert_eq!(e.supported_versions, vec![1]);
        }
        other => panic!("{other:?}"),
    }
    assert!(conn.is_closed());
    assert!(matches!(
        conn.request(Request::Challenge(ChallengeRequest {})),
        Err(ClientConnError::Closed)
    ));
}

#[test]
fn hello_refused_for_another_reason_is_not_a_version_error() {
    let mut conn = ClientConn::new(MAX);
    conn.request(hello(vec![1])).unwrap();
    conn.handle_message(
        closing(ErrorCode::InvalidArgument, "agent")
            .encode_to_vec()
            .into(),
    )
    .unwrap();
    assert!(matches!(
        conn.poll_event(),
        Err(ClientConnError::HelloRefused(WireError {
            code: ErrorCode::InvalidArgument,
            ..
        }))
    ));
}

#[test]
fn a_version_that_was_not_offered_is_refused() {
    let mut conn = ClientConn::new(MAX);
    conn.request(hello(vec![1])).unwrap();
    conn.handle_stream_bytes(&stream(&hello_answer(1, 2)))
        .unwrap();
    assert!(matches!(
        conn.poll_event(),
        Err(ClientConnError::VersionNotOffered { chosen: 2 })
    ));
    assert!(conn.is_closed());
}

#[test]
fn a_hello_answer_that_is_not_hello_is_refused() {
    let mut conn = ClientConn::new(MAX);
    conn.request(hello(vec![1])).unwrap();
    conn.handle_stream_bytes(&stream(&answer(1, ok()))).unwrap();
    assert!(matches!(
        conn.poll_event(),
        Err(ClientConnError::UnexpectedHelloAnswer)
    ));
}

#[test]
fn answers_are_matched_to_their_request_by_id() {
    let mut conn = open();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    let b = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(conn.poll_transmit().unwrap().request_id, a);
    assert_eq!(conn.poll_transmit().unwrap().request_id, b);
    // Answered out of order.
    let mut bytes = stream(&answer(b, ok()));
    bytes.extend(stream(&answer(a, None)));
    conn.handle_stream_bytes(&bytes).unwrap();
    assert_eq!(
        conn.poll_event().unwrap(),
        Some(ClientEvent::Answer {
            request_id: b,
            result: Ok(response::Result::Ok(OkResult {}))
        })
    );
    assert_eq!(
        conn.poll_event().unwrap(),
        Some(ClientEvent::Answer {
            request_id: a,
            result: Err(AnswerError::NoResult)
        })
    );
    assert_eq!(conn.pending_len(), 0);
}

#[test]
fn an_answer_to_no_pending_request_is_a_harmless_error() {
    let mut conn = open();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    conn.handle_stream_bytes(&stream(&answer(a + 100, ok())))
        .unwrap();
    let error = conn.poll_event().unwrap_err();
    assert!(matches!(
        &error,
        ClientConnError::UnknownRequestId { request_id, result: Some(_) } if *request_id == a + 100
    ));
    assert!(!error.is_fatal());
    assert!(conn.is_pending(a));
    // A cancelled request's late answer is unknown too.
    assert!(conn.cancel(a));
    conn.handle_stream_bytes(&stream(&answer(a, ok()))).unwrap();
    assert!(matches!(
        conn.poll_event(),
        Err(ClientConnError::UnknownRequestId { .. })
    ));
}

#[test]
fn pushes_are_kept_apart_from_answers() {
    let mut conn = open();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    let push = Push {
        event: Some(push::Event::PrekeyLowStock(PrekeyLowStock {
            one_time_prekeys: 3,
            kem_prekeys: 1,
            ..PrekeyLowStock::default()
        })),
    };
    let mut bytes = stream(&ServerFrame {
        kind: Some(server_frame::Kind::Push(push.clone())),
    });
    bytes.extend(stream(&answer(a, ok())));
    conn.handle_stream_bytes(&bytes).unwrap();
    assert_eq!(conn.poll_event().unwrap(), Some(ClientEvent::Push(push)));
    assert!(conn.is_pending(a), "a push answers nothing");
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(ClientEvent::Answer { request_id, result: Ok(_) }) if request_id == a
    ));
}

#[test]
fn an_error_answer_is_mapped_to_a_typed_refusal() {
    let mut conn = open();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    conn.handle_stream_bytes(&stream(&answer(
        a,
        Some(response::Result::Error(Error {
            code: ErrorCode::RateLimited as i32,
            message: "slow down".into(),
            retry_after_ms: 250,
            ..Error::default()
        })),
    )))
    .unwrap();
    match conn.poll_event().unwrap() {
        Some(ClientEvent::Answer {
            result: Err(AnswerError::Refused(e)),
            ..
        }) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            assert_eq!(e.retry_after_ms, 250);
            assert_eq!(e.message, "slow down");
        }
        other => panic!("{other:?}"),
    }
    // An unknown code keeps its number.
    let b = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    conn.handle_stream_bytes(&stream(&answer(
        b,
        Some(response::Result::Error(Error {
            code: 9999,
            ..Error::default()
        })),
    )))
    .unwrap();
    match conn.poll_event().unwrap() {
        Some(ClientEvent::Answer {
            result: Err(AnswerError::Refused(e)),
            ..
        }) => {
            assert_eq!(e.code, ErrorCode::Unspecified);
            assert_eq!(e.to_proto().code, 9999);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_closing_frame_abandons_the_pending_requests() {
    let mut conn = open();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    let b = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    conn.handle_stream_bytes(&stream(&closing(ErrorCode::Unavailable, "shutting down")))
        .unwrap();
    match conn.poll_event().unwrap() {
        Some(ClientEvent::Closing { error, abandoned }) => {
            assert_eq!(error.code, ErrorCode::Unavailable);
            assert_eq!(abandoned, vec![a, b]);
        }
        other => panic!("{other:?}"),
    }
    assert!(conn.is_closed());
}

#[test]
fn oversize_and_invalid_prefixes_are_typed_errors_and_change_nothing() {
    // A prefix announcing 64 KiB > MAX.
    let mut fresh = open();
    let id = fresh
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    assert!(matches!(
        fresh.handle_stream_bytes(&[0x80, 0x80, 0x04]),
        Err(ClientConnError::Frame(FrameError::Oversize { .. }))
    ));
    assert_eq!(fresh.buffered_len(), 0);
    assert!(fresh.is_pending(id));
    assert!(matches!(
        fresh.handle_stream_bytes(&[0xff; 11]),
        Err(ClientConnError::Frame(FrameError::InvalidLengthPrefix))
    ));
    assert_eq!(fresh.buffered_len(), 0);
    assert!(matches!(
        fresh.handle_message(Bytes::from(vec![0; MAX + 1])),
        Err(ClientConnError::Frame(FrameError::Oversize { .. }))
    ));
    assert_eq!(fresh.buffered_len(), 0);
    assert!(fresh.is_pending(id));
}

#[test]
fn a_malformed_body_is_consumed_and_nothing_else_changes() {
    let mut conn = open();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    // Field 1 (response) as a varint: wrong wire type.
    conn.handle_stream_bytes(&[0x02, 0x08, 0x01]).unwrap();
    conn.handle_stream_bytes(&stream(&answer(a, ok()))).unwrap();
    assert!(matches!(
        conn.poll_event(),
        Err(ClientConnError::Malformed(_))
    ));
    assert!(conn.is_pending(a));
    assert!(matches!(
        conn.poll_event().unwrap(),
        Some(ClientEvent::Answer { request_id, .. }) if request_id == a
    ));
    // An empty server frame is ignorable.
    conn.handle_message(Bytes::new()).unwrap();
    let error = conn.poll_event().unwrap_err();
    assert!(matches!(error, ClientConnError::EmptyFrame));
    assert!(!error.is_fatal());
}

#[test]
fn requests_before_the_hello_answer_are_queued_and_answered_in_turn() {
    let mut conn = ClientConn::new(MAX);
    let h = conn.request(hello(vec![1])).unwrap();
    let a = conn
        .request(Request::Challenge(ChallengeRequest {}))
        .unwrap();
    assert_eq!(conn.pending_len(), 2);
    let mut bytes = stream(&hello_answer(h, 1));
    bytes.extend(stream(&answer(a, ok())));
    conn.handle_stream_bytes(&bytes).unwrap();
    assert!(matches!(
        conn.poll_event(),
        Ok(Some(ClientEvent::Hello { .. }))
    ));
    assert!(matches!(
        conn.poll_event(),
        Ok(Some(ClientEvent::Answer { .. }))
    ));
    assert!(conn.poll_event().unwrap().is_none());
}

#[test]
fn a_request_over_the_frame_limit_is_refused_before_anything_is_queued() {
    let mut conn = open();
    let huge = Request::Hello(Hello {
        versions: vec![],
        client_agent: "x".repeat(2 * 1024 * 1024),
    });
    assert!(matches!(
        conn.request(huge),
        Err(ClientConnError::Encode(_))
    ));
    assert!(conn.poll_transmit().is_none());
    assert_eq!(conn.pending_len(), 0);
}
