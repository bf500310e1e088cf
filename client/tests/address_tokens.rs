//! QUIC address validation tokens (SPEC.md §12.12): an account's reconnect
//! spends a token its earlier connection was handed and skips the server's
//! Retry; counted on the server's `microbot_quic_retries_total`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::{TestServer, fast_config, online, register, wait_connected};
use microbot_client::IdentitySource;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The server's count of QUIC Retry packets sent.
async fn retries(metrics: std::net::SocketAddr) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("microbot_quic_retries_total "))
        .unwrap_or_else(|| panic!("no retry count in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_account_skips_the_retry() {
    let server = TestServer::start_tweaked(
        tempfile::tempdir().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        |c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap()),
    )
    .await;
    let metrics = server.metrics_addr.expect("metrics listener");
    let mut user = register(&server, "tokyo").await;
    let mut device = online(&server, &mut user, IdentitySource::New, fast_config()).await;
    // Registration, enrolment and the first login each opened a
    // connection with no token: each answered a Retry.
    let before = retries(metrics).await;
    assert!(before >= 1.0, "the first connections were sent a Retry");

    // The tokens arrive just after the handshake; give them a moment.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    device.account.disconnect().await;
    device.account.connect();
    wait_connected(&mut device.events).await;
    assert_eq!(
        retries(metrics).await,
        before,
        "the reconnect brought a token instead of answering a Retry"
    );
    server.stop().await;
}
