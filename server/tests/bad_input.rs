//! Bad input closes only the offending connection with a typed error; other
//! clients keep being served (issue 4 point 8), and version negotiation.

use crate::common;

use common::*;
use microbot_protocol::transport::{
    ClientFrame, ErrorCode, Hello, ListDevicesRequest, client_frame::Request, response,
};

async fn still_serving(other: &mut Client) {
    let reply = other
        .request(Request::ListDevices(ListDevicesRequest {}))
        .await;
    assert!(
        matches!(reply, response::Result::DeviceList(_)),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversize_and_out_of_order_frames_close_only_that_connection() {
    let server = TestServer::start().await;
    let mut bystander = new_device(&server, "henry").await;

    // A frame whose body is not a ClientFrame (field 1 with wire type 7).
    let mut c = server.client().await;
    c.send_raw(&[3, 0x0f, 0xff, 0xff]).await;
    let closed = c.closed().await;
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::MalformedFrame as i32)
    );
    assert_eq!(closed.close_code, Some(ErrorCode::MalformedFrame as u64));
    still_serving(&mut bystander.client).await;

    // A length prefix above the 1 MiB maximum: refused from the prefix alone.
    let mut c = server.client().await;
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(2 * 1024 * 1024, &mut prefix);
    c.send_raw(&prefix).await;
    let closed = c.closed().await;
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::FrameTooLarge as i32)
    );
    assert_eq!(closed.close_code, Some(ErrorCode::FrameTooLarge as u64));
    still_serving(&mut bystander.client).await;

    // An invalid (over-long) length prefix.
    let mut c = server.client().await;
    c.send_raw(&[0xff; 11]).await;
    let closed = c.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::MalformedFrame as u64));

    // A frame cut short by the end of the stream.
    let mut c = server.client().await;
    c.send_raw(&[10, 1, 2]).await;
    c.send.finish().unwrap();
    let closed = c.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::MalformedFrame as u64));

    // First frame is not Hello.
    let mut c = Client::connect_raw(server.addr, &server.fingerprint).await;
    c.send_frame(&ClientFrame {
        request_id: 1,
        request: Some(Request::ListDevices(ListDevicesRequest {})),
    })
    .await;
    let closed = c.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::ProtocolViolation as u64));

    // Hello twice.
    let mut c = server.client().await;
    c.send_frame(&ClientFrame {
        request_id: 9,
        request: Some(Request::Hello(Hello {
            versions: vec![1],
            client_agent: String::new(),
        })),
    })
    .await;
    let closed = c.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::ProtocolViolation as u64));

    // An empty request is an ordinary error; the connection stays open.
    let mut c = server.client().await;
    c.send_frame(&ClientFrame {
        request_id: 5,
        request: None,
    })
    .await;
    let frame = c.read_frame().await.unwrap();
    let Some(microbot_protocol::transport::server_frame::Kind::Response(r)) = frame.kind else {
        panic!("{frame:?}")
    };
    let Some(response::Result::Error(e)) = r.result else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::UnknownRequest as i32);
    let err = c
        .request_err(Request::ListDevices(ListDevicesRequest {}))
        .await;
    assert_eq!(common::code(&err), ErrorCode::NotAuthenticated);

    still_serving(&mut bystander.client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_required_versions_are_refused_with_the_supported_list() {
    let server = TestServer::start().await;
    let mut c = Client::connect_raw(server.addr, &server.fingerprint).await;
    c.send_frame(&ClientFrame {
        request_id: 1,
        request: Some(Request::Hello(Hello {
            versions: vec![2, 7],
            client_agent: "future".into(),
        })),
    })
    .await;
    let closed = c.closed().await;
    let closing = closed.closing.unwrap();
    assert_eq!(closing.code, ErrorCode::UnsupportedVersion as i32);
    assert_eq!(closing.supported_versions, vec![1]);
    assert_eq!(
        closed.close_code,
        Some(ErrorCode::UnsupportedVersion as u64)
    );

    // A client speaking 1 and 2 gets 1.
    let mut c = Client::connect_raw(server.addr, &server.fingerprint).await;
    let reply = c
        .request(Request::Hello(Hello {
            versions: vec![2, 1],
            client_agent: String::new(),
        }))
        .await;
    let response::Result::Hello(h) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(h.version, 1);
    assert_eq!(h.limits.unwrap().max_frame_len, 1024 * 1024);
    server.stop().await;
}
