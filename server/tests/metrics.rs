//! Prometheus metrics and `/healthz` over real TCP, moving with real QUIC
//! traffic (SPEC.md §18.3).

use crate::common;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{self, ErrorCode, client_frame::Request, response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_and_healthz_are_served_and_move() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.rate_send_per_account = 3;
    })
    .await;
    let addr = server.metrics_addr.expect("metrics listener bound");
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, _) = http_get(addr, "/nope").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (_, before) = http_get(addr, "/metrics").await;
    assert_eq!(value(&before, "microbot_messages_in_total"), 0.0);

    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    // A failed login.
    let mut c = server.client().await;
    let bad = login_signature(&device_key(), &c.challenge.clone(), bob.device_id);
    let e = c
        .request_err(Request::Login(transport::LoginRequest {
            device_id: bob.device_id,
            signature: bad,
        }))
        .await;
    assert_eq!(code(&e), ErrorCode::BadSignature);
    // Sends (one pushed to bob), a group send with fan-out 1, one refusal.
    for _ in 0..2 {
        send_to(
            &mut alice.client,
            &[(bob.device_id, Bytes::from_static(b"ct"))],
        )
        .await;
    }
    let gid = Bytes::from(vec![7u8; 16]);
    alice
        .client
        .request(Request::CreateGroup(transport::CreateGroupRequest {
            group_id: gid.clone(),
            members: vec!["bob".into()],
            encrypted_metadata: Bytes::new(),
        }))
        .await;
    let r = alice
        .client
        .request(Request::SendGroup(transport::SendGroupRequest {
            group_id: gid,
            ciphertext: Bytes::from_static(b"g"),
            ..transport::SendGroupRequest::default()
        }))
        .await;
    assert!(matches!(r, response::Result::Send(_)), "{r:?}");
    let e = alice
        .client
        .request_err(Request::Send(transport::SendRequest {
            envelopes: vec![transport::OutgoingEnvelope {
                recipient_device_id: bob.device_id,
                ciphertext: Bytes::from_static(b"x"),
            }],
            complete_accounts: Vec::new(),
        }))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited);

    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(value(&body, "microbot_logins_total{result=\"ok\"}"), 2.0);
    assert!(value(&body, "microbot_logins_total{result=\"failed\"}") >= 1.0);
    assert_eq!(value(&body, "microbot_messages_in_total"), 3.0);
    assert!(
        value(&body, "microbot_messages_out_total") >= 3.0,
        "pushed to bob"
    );
    // The queue gauge is counted at most once per QUEUED_MAX_AGE (issue 14):
    // the first scrape above cached 0, so wait for the next count.
    let mut queued = value(&body, "microbot_queued_envelopes");
    let deadline = std::time::Instant::now()
        + microbot_server::testing::metrics::QUEUED_MAX_AGE
        + std::time::Duration::from_secs(10);
    while queued != 3.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        queued = value(
            &http_get(addr, "/metrics").await.1,
            "microbot_queued_envelopes",
        );
    }
    assert_eq!(queued, 3.0);
    assert_eq!(value(&body, "microbot_group_fan_out_count"), 1.0);
    assert_eq!(value(&body, "microbot_group_fan_out_bucket{le=\"1\"}"), 1.0);
    assert_eq!(
        value(&body, "microbot_rate_limited_total{limit=\"send_account\"}"),
        1.0
    );
    assert_eq!(
        value(
            &body,
            "microbot_request_duration_seconds_count{kind=\"send\"}"
        ),
        3.0
    );
    assert!(value(&body, "microbot_connections_open") >= 3.0);
    assert!(value(&body, "microbot_connections_total") >= 3.0);
    assert!(body.contains("# TYPE microbot_request_duration_seconds histogram"));
    server.stop().await;
}

/// Address validation (SPEC.md §12.12): a first connection answers a
/// Retry and is handed tokens; a reconnect that brings one skips the
/// Retry; a client with no token (another store) gets a Retry again.
#[tokio::test]
async fn a_reconnect_with_an_address_token_skips_the_retry() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.expect("metrics listener bound");
    let retries = || async move {
        value(
            &http_get(metrics, "/metrics").await.1,
            "microbot_quic_retries_total",
        )
    };
    assert_eq!(retries().await, 0.0);
    // One client configuration: one token store, as one account keeps.
    let config = client_config(&server.fingerprint);
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let connect = |endpoint: &quinn::Endpoint| {
        let connecting = endpoint.connect(server.addr, "localhost").unwrap();
        async move {
            tokio::time::timeout(TIMEOUT, connecting)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let first = connect(&endpoint).await;
    // The tokens come in NEW_TOKEN frames after the handshake.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while first.stats().frame_rx.new_token == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(first.stats().frame_rx.new_token > 0, "tokens handed out");
    assert_eq!(
        retries().await,
        1.0,
        "the first connection was sent a Retry"
    );
    first.close(0u32.into(), b"bye");

    let second = connect(&endpoint).await;
    assert_eq!(retries().await, 1.0, "the reconnect spent a token instead");
    second.close(0u32.into(), b"bye");

    let mut stranger = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    stranger.set_default_client_config(client_config(&server.fingerprint));
    let third = connect(&stranger).await;
    assert_eq!(retries().await, 2.0, "no token: a Retry");
    third.close(0u32.into(), b"bye");
    server.stop().await;
}
